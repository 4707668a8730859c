"""Which requests the proxy lets through and which headers cross it."""

from __future__ import annotations

import pytest

from poller.proxy import guard


@pytest.mark.parametrize(
    ("host", "extra", "allowed"),
    [(b"127.0.0.1:8787", (), True), (b"localhost:8787", (), True), (b"LOCALHOST.", (), True),
     (b"[::1]:8787", (), True), (b"10.1.2.3:80", (), True), (b"poller:8787", ("poller",), True),
     (b"evil.example.com:8787", (), False), (b"127.0.0.1.nip.io:8787", (), False),
     (b"localhost.evil.com", (), False), (b"", (), False), (None, (), False)],
)  # fmt: skip
def test_host_allowed(host: bytes | None, extra: tuple[str, ...], allowed: bool) -> None:
    """localhost, IP literals and listed names pass; any other name (DNS rebinding) does not."""
    assert guard.host_allowed(host, extra) is allowed


@pytest.mark.parametrize(
    ("headers", "browser"),
    [([(b"origin", b"http://localhost:3000")], True), ([(b"origin", b"null")], True),
     ([(b"sec-fetch-site", b"same-origin")], True), ([(b"sec-fetch-site", b"none")], False),
     ([(b"user-agent", b"mistral-client-python/1.0")], False)],
)  # fmt: skip
def test_browser_requests_are_recognised(headers: guard.Headers, browser: bool) -> None:
    """Origin or Sec-Fetch-Site (other than a typed-in navigation) mark a web page."""
    assert guard.from_browser(headers) is browser


def test_token_must_match_exactly() -> None:
    """Only 'Bearer <token>' passes."""
    assert guard.token_matches(b"Bearer s3cret", "s3cret")
    assert not guard.token_matches(b"Bearer s3cre", "s3cret")
    assert not guard.token_matches(b"s3cret", "s3cret")
    assert not guard.token_matches(None, "s3cret")


def test_refusal_without_token_names_the_key_not_the_token() -> None:
    """A missing token is a 401 whose message says what to send, not what the token is."""
    refusal = guard.refuse([(b"host", b"localhost")], hosts=(), token="s3cret-token")
    assert refusal is not None and refusal.status == 401
    assert "s3cret-token" not in refusal.message and "proxy.token" in refusal.message


def test_upstream_headers_drop_hop_by_hop_and_named_ones() -> None:
    """Hop-by-hop headers, those Connection names, Host and Content-Length never go upstream."""
    sent = guard.upstream_headers(
        [
            (b"Host", b"localhost:8787"),
            (b"Connection", b"keep-alive, X-Hop"),
            (b"X-Hop", b"1"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Authorization", b"Basic eA=="),
            (b"Content-Length", b"12"),
            (b"Authorization", b"Bearer client-key"),
            (b"Accept-Encoding", b"gzip, br, zstd"),
            (b"X-Custom", b"kept"),
        ]
    )
    assert sent == [
        (b"authorization", b"Bearer client-key"),
        (b"accept-encoding", b"gzip"),
        (b"x-custom", b"kept"),
    ]


def test_injection_replaces_the_local_token() -> None:
    """With inject, the client's Authorization (the local token) becomes the workspace key."""
    sent = guard.upstream_headers(
        [(b"authorization", b"Bearer local-token")], inject=("Authorization", "Bearer sk-ws")
    )
    assert sent == [(b"authorization", b"Bearer sk-ws")]
    custom = guard.upstream_headers(
        [(b"authorization", b"Bearer local-token")], inject=("X-Api-Key", "sk-ws")
    )
    assert custom == [(b"x-api-key", b"sk-ws")]


def test_downstream_headers_keep_the_answer_as_it_is() -> None:
    """Answer headers pass but for hop-by-hop ones; Server and Date stay single."""
    kept = guard.downstream_headers(
        [(b"Server", b"mistral"), (b"Date", b"x"), (b"Transfer-Encoding", b"chunked"),
         (b"Content-Type", b"text/event-stream"), (b"Connection", b"close")]
    )  # fmt: skip
    assert kept == [
        (b"server", b"mistral"),
        (b"date", b"x"),
        (b"content-type", b"text/event-stream"),
    ]


@pytest.mark.parametrize(
    ("value", "kept"),
    [(b"gzip, deflate, br", b"gzip, deflate"), (b"br", b"identity"), (b"*", b"identity"),
     (b"gzip;q=1.0, identity;q=0.5", b"gzip;q=1.0, identity;q=0.5")],
)  # fmt: skip
def test_accept_encoding_is_cut_to_what_can_be_decoded(value: bytes, kept: bytes) -> None:
    """Encodings the recorder cannot undo are not offered upstream."""
    assert guard.accept_encoding(value) == kept


@pytest.mark.parametrize(
    ("path", "plain"),
    [(b"/v1/models", True), (b"/v1", True), (b"/v1/files/f%20x", True),
     (b"/v1/models/ft%3Aopen-mistral-7b%3Aabc", True), (b"/v1/a..b/c.", True),
     (b"/v1/../_sim", False), (b"/v1/./models", False), (b"/v1/models/..", False),
     (b"/v1/%2e%2e/_sim", False), (b"/v1/%2E%2e/_sim", False), (b"/v1/.%2e/_sim", False),
     (b"/v1/..%2f_sim", False), (b"/v1/..%2F_sim", False), (b"/v1/models/a%2Fb", True),
     (b"/v1/models/a%252Fb%23c", True), (b"/v1/a%2f..%2f..%2f_sim", False),
     (b"/v1/%252e%252e/_sim", False), (b"/v1/..%252f_sim", False),
     (b"/v1/%25252e%25252e/_sim", False), (b"/v1/..\\_sim", False), (b"/v1/..%5c_sim", False),
     (b"/v1/..%255C_sim", False), (b"/v1%2f..%2f_sim", False), (b"/_sim", False)],
)  # fmt: skip
def test_paths_that_could_leave_v1_are_not_plain(path: bytes, plain: bool) -> None:
    """Dot segments and backslashes, at any encoding depth, are not plain; a bare %2F is."""
    assert guard.plain_api_path(path) is plain


def test_a_path_encoded_deeper_than_the_check_goes_is_not_plain() -> None:
    """A path still percent-encoded after every round of decoding is refused too."""
    path = b"/v1/" + b"%" + b"25" * guard.MAX_DECODES + b"2e"
    assert not guard.plain_api_path(path)


def test_escaping_paths_are_refused_with_400_others_outside_v1_with_404() -> None:
    """A path that may leave /v1 gets 400; one that never was under /v1 gets 404."""
    escaping = guard.refuse_path(b"/v1/%2e%2e/_sim")
    outside = guard.refuse_path(b"/_sim")
    assert escaping is not None and escaping.status == 400
    assert outside is not None and outside.status == 404
    assert guard.refuse_path(b"/v1/models") is None


ACCOUNTS = (
    guard.Account("a", b"authorization", b"Bearer key-a"),
    guard.Account("b", b"authorization", b"Bearer key-b"),
    guard.Account("c", b"x-api-key", b"key-c"),
)


@pytest.mark.parametrize(
    ("headers", "workspace"),
    [([(b"authorization", b"Bearer key-b")], "b"), ([(b"Authorization", b"Bearer key-a ")], "a"),
     ([(b"x-api-key", b"key-c")], "c"), ([(b"authorization", b"Bearer key-")], None),
     ([(b"authorization", b"key-a")], None), ([], None)],
)  # fmt: skip
def test_a_call_belongs_to_the_workspace_of_its_key(
    headers: guard.Headers, workspace: str | None
) -> None:
    """The key a call carries names its workspace; an unknown or partial key names none."""
    assert guard.workspace_of(headers, ACCOUNTS) == workspace


def test_accounts_keep_their_keys_out_of_repr() -> None:
    """An account's key never shows in its repr (logs, tracebacks)."""
    assert "key-a" not in repr(ACCOUNTS[0])


@pytest.mark.parametrize(
    ("headers", "credential"),
    [([(b"x-api-key", b"key-c"), (b"user-agent", b"sdk")], b"key-c"),
     ([(b"authorization", b" Bearer key-z ")], b"Bearer key-z"),
     ([(b"authorization", b"")], None), ([], None)],
)  # fmt: skip
def test_the_credential_is_read_where_workspace_keys_travel(
    headers: guard.Headers, credential: bytes | None
) -> None:
    """Any header a workspace's key travels in (Authorization too); blank or absent is none."""
    assert guard.credential(headers, ACCOUNTS) == credential


@pytest.mark.parametrize(
    ("credential", "fingerprint"),
    [(b"Bearer sk-stranger-key-5555555555", "sha256:0d6d46d5"),
     (b"sk-stranger-key-5555555555", "sha256:0d6d46d5"),
     (b"Bearer key-a", "sha256:f10f7812"), (b"", "none"), (None, "none")],
)  # fmt: skip
def test_a_key_is_named_by_eight_digits_of_its_sha256(
    credential: bytes | None, fingerprint: str
) -> None:
    """The fingerprint is the key's SHA-256 cut to 8 hex digits, with or without its scheme."""
    assert guard.fingerprint(credential) == fingerprint
