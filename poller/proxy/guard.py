"""Which requests the proxy lets through, and which headers cross it: pure functions.

- **Host** must name this machine or an address, never a stranger's domain: a DNS
  rebinding page reaches 127.0.0.1 under its own name, and is refused here. Allowed are
  ``localhost``, any IP address literal and the names listed in ``proxy.hosts``.
- **Browsers** are refused: a request carrying ``Origin`` or ``Sec-Fetch-Site`` (other
  than a typed-in navigation) comes from a web page, and no page may use the proxy.
- **The local token** (``inject_key``) is compared in constant time.
- **Paths** stay under ``/v1/``: one with a dot segment or a backslash, at any depth of
  percent-encoding, could be read upstream as a path outside the API (``/v1/../x``,
  ``/v1/%2e%2e/x``, ``/v1/..%252fx``) and is refused before it is sent. An encoded slash
  alone moves nothing (a model id may hold one) and passes.
- **Hop-by-hop headers** (``Connection`` and those it names, ``Keep-Alive``,
  ``Transfer-Encoding``…) are dropped both ways; ``Host`` and ``Content-Length`` are
  set anew for the upstream request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import ipaddress
import json
import urllib.parse
from collections.abc import Iterable, Sequence

Headers = Sequence[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
DECODABLE = frozenset({"gzip", "x-gzip", "deflate", "identity"})
"""Content encodings the recorder can undo; a client's ``Accept-Encoding`` is cut to these."""


@dataclasses.dataclass(frozen=True, slots=True)
class Refusal:
    """A request the proxy answers itself, in Mistral's error shape."""

    status: int
    message: str
    type: str = "invalid_request_error"

    def body(self) -> bytes:
        return error_body(self.message, self.type)


def error_body(message: str, type: str = "invalid_request_error") -> bytes:
    """Mistral's error object, as JSON bytes."""
    doc = {"object": "error", "message": message, "type": type, "param": None, "code": None}
    return json.dumps(doc).encode()


def header(headers: Headers, name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or ``None``."""
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


def hostname(host: str) -> str:
    """The name in a ``Host`` header, lower case: ``[::1]:8787`` gives ``::1``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def host_allowed(host: bytes | None, extra: Iterable[str] = ()) -> bool:
    """Whether a ``Host`` header names this machine: localhost, an IP literal, or ``extra``."""
    if not host:
        return False
    name = hostname(host.decode("latin-1"))
    if name == "localhost" or name in {h.lower().rstrip(".") for h in extra}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def from_browser(headers: Headers) -> bool:
    """Whether the request comes from a web page (``Origin``, or ``Sec-Fetch-Site``)."""
    if header(headers, b"origin") is not None:
        return True
    site = header(headers, b"sec-fetch-site")
    return site is not None and site.strip().lower() != b"none"


@dataclasses.dataclass(frozen=True, slots=True)
class Account:
    """A workspace's credential as a request carries it: the header and its whole value."""

    workspace: str
    header: bytes
    """Lower case, e.g. ``authorization``."""
    value: bytes = dataclasses.field(repr=False)


def workspace_of(headers: Headers, accounts: Iterable[Account]) -> str | None:
    """The workspace whose key ``headers`` carry, each compared in constant time; or ``None``."""
    found: str | None = None
    for account in accounts:
        sent = header(headers, account.header)
        if sent is not None and hmac.compare_digest(sent.strip(), account.value):
            found = found or account.workspace
    return found


def credential(headers: Headers, accounts: Iterable[Account]) -> bytes | None:
    """The credential ``headers`` carry where the workspaces' keys travel (``Authorization``
    when no workspace has a key), or ``None``."""
    names = dict.fromkeys([*(a.header for a in accounts), b"authorization"])
    for name in names:
        value = header(headers, name)
        if value is not None and value.strip():
            return value.strip()
    return None


FINGERPRINT_DIGITS = 8
"""Hex digits of a key's SHA-256 kept in its fingerprint: enough to tell a few keys apart;
the key cannot be recovered from them."""


def fingerprint(value: bytes | None) -> str:
    """A short name for a credential in a log line: ``sha256:`` and the first 8 hex digits
    of the key's SHA-256 (a scheme such as ``Bearer`` left out); ``none`` without one.

    ``printf %s "$KEY" | sha256sum | cut -c1-8`` gives the same digits for a key at hand.
    """
    if value is None or not value.strip():
        return "none"
    parts = value.strip().split(None, 1)
    key = parts[-1]
    return "sha256:" + hashlib.sha256(key).hexdigest()[:FINGERPRINT_DIGITS]


def token_matches(authorization: bytes | None, token: str) -> bool:
    """Whether ``Authorization`` is ``Bearer <token>``, compared in constant time."""
    expected = f"Bearer {token}".encode()
    return authorization is not None and hmac.compare_digest(authorization.strip(), expected)


MAX_DECODES = 8
"""Rounds of percent-decoding a path is checked through; one still encoded after is refused."""


def plain_api_path(raw_path: bytes) -> bool:
    """Whether ``raw_path`` is under ``/v1/`` however many times a server decodes it.

    Each round of percent-decoding must leave a path under ``/v1`` with no ``.`` or ``..``
    segment (slashes that decoding added split segments too) and no backslash: then no
    normalization, by this proxy or upstream, decoding it any number of times, can take
    it elsewhere.
    """
    text = raw_path.decode("latin-1")
    for _ in range(MAX_DECODES):
        if "\\" in text or not (text == "/v1" or text.startswith("/v1/")):
            return False
        if any(segment in (".", "..") for segment in text.split("/")):
            return False
        decoded = urllib.parse.unquote(text, encoding="latin-1")
        if decoded == text:
            return True
        text = decoded
    return False


def refuse_path(raw_path: bytes) -> Refusal | None:
    """Why the proxy must not forward a request for ``raw_path``, or ``None``."""
    if not (raw_path == b"/v1" or raw_path.startswith(b"/v1/")):
        return Refusal(404, "poller proxy: only /v1/... is forwarded to Mistral")
    if not plain_api_path(raw_path):
        return Refusal(
            400,
            "poller proxy: the path has a dot segment or a backslash (perhaps "
            "percent-encoded), which could leave /v1; send the path as the API documents it",
        )
    return None


def refuse(headers: Headers, *, hosts: Iterable[str], token: str | None) -> Refusal | None:
    """Why the proxy must not forward a request with these headers, or ``None``."""
    host = header(headers, b"host")
    if not host_allowed(host, hosts):
        shown = (host or b"").decode("latin-1")[:100] or "(none)"
        return Refusal(
            403,
            f"poller proxy: Host {shown!r} is not this machine; call it as localhost or by "
            "IP address, or add the name to proxy.hosts",
        )
    if from_browser(headers):
        return Refusal(
            403,
            "poller proxy: requests from web pages (with an Origin header) are refused; "
            "call the proxy from a program",
        )
    if token is not None and not token_matches(header(headers, b"authorization"), token):
        return Refusal(
            401,
            "poller proxy: send the local token as Authorization: Bearer <proxy.token>",
            "authentication_error",
        )
    return None


def _connection_tokens(headers: Headers) -> set[bytes]:
    named: set[bytes] = set()
    for key, value in headers:
        if key.lower() == b"connection":
            named.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return named


def accept_encoding(value: bytes) -> bytes:
    """A client's ``Accept-Encoding`` cut to the encodings the recorder can decode."""
    kept = [
        part.strip()
        for part in value.split(b",")
        if part.split(b";", 1)[0].strip().lower().decode("latin-1") in DECODABLE
    ]
    return b", ".join(kept) or b"identity"


def upstream_headers(headers: Headers, *, inject: tuple[str, str] | None = None) -> Headers:
    """The client's headers as sent upstream.

    Hop-by-hop headers, ``Host`` and ``Content-Length`` go; with ``inject`` (a header
    name and value) the client's ``Authorization`` — the local token — is replaced by
    the workspace's credential.
    """
    drop = HOP_BY_HOP | _connection_tokens(headers) | {b"host", b"content-length"}
    if inject is not None:
        drop = drop | {b"authorization", inject[0].lower().encode("latin-1")}
    out = []
    for key, value in headers:
        name = key.lower()
        if name in drop:
            continue
        if name == b"accept-encoding":
            value = accept_encoding(value)
        out.append((name, value))
    if inject is not None:
        out.append((inject[0].lower().encode("latin-1"), inject[1].encode("latin-1")))
    return out


def downstream_headers(headers: Headers) -> Headers:
    """The upstream answer's headers as relayed to the client: hop-by-hop ones dropped."""
    drop = HOP_BY_HOP | _connection_tokens(headers)
    return [(key.lower(), value) for key, value in headers if key.lower() not in drop]
