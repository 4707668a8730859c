from __future__ import annotations

import json
import pathlib
import re
import textwrap
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml
from pydantic import SecretStr

from poller import config
from poller.exceptions import ConfigError

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "poller.example.yaml"
DOCS = ROOT / "docs" / "configuration.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # 24 bytes
EXAMPLE_ENV = {
    "MISTRAL_API_KEY": "sk-prod-1234567890",
    "MISTRAL_RESEARCH_API_KEY": "sk-research-0987654321",
    "WEBHOOK_SECRET": SECRET,
    "POLLER_PROXY_TOKEN": "proxy-token-abcdef",
    "RABBITMQ_PASSWORD": "rabbit-password-123",
}


def parse(text: str, environ: dict[str, str] | None = None) -> config.Config:
    return config.parse(textwrap.dedent(text), source="poller.yaml", environ=environ or {})


def error(text: str, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse(text, environ)
    return info.value


HTTP_SINK = """\
sinks:
  - name: ops
    type: http
"""

# (id, yaml, the exact one-line message)
ERRORS = [
    (
        "unknown key with a suggestion",
        "poll:\n  intervall: 5s\n",
        "poller.yaml:2: poll.intervall: unknown key 'intervall'; did you mean 'interval'?",
    ),
    (
        "unknown key without a close match",
        "log:\n  colour: red\n",
        "poller.yaml:2: log.colour: unknown key 'colour'; valid keys: level, format",
    ),
    (
        "unknown top-level key",
        "sink: []\n",
        "poller.yaml:1: sink: unknown key 'sink'; did you mean 'sinks'?",
    ),
    (
        "unknown source",
        "sources:\n  jobs: {}\n",
        "poller.yaml:2: sources.jobs: unknown key 'jobs'; "
        "valid keys: batch_jobs, fine_tuning_jobs, files, models, libraries, workflow_runs",
    ),
    (
        "section that is not a mapping",
        "poll: []\n",
        "poller.yaml:1: poll: expected a mapping, got a list",
    ),
    (
        "sinks that are not a list",
        "sinks:\n  name: ops\n",
        "poller.yaml:2: sinks: expected a list, got a mapping",
    ),
    (
        "boolean that is not true or false",
        "poll:\n  emit_existing: maybe\n",
        "poller.yaml:2: poll.emit_existing: expected true or false, got a string",
    ),
    (
        "whole number given a fraction",
        "mistral:\n  page_size: 1.5\n",
        "poller.yaml:2: mistral.page_size: expected a whole number, got a number",
    ),
    (
        "whole number given a boolean",
        "mistral:\n  page_size: true\n",
        "poller.yaml:2: mistral.page_size: expected a number, got true/false",
    ),
    (
        "string given a number",
        "log:\n  level: 3\n",
        "poller.yaml:2: log.level: unknown value a number; use one of: debug, info, warning, error",
    ),
    (
        "secret given a number",
        "mistral:\n  api_key: 12345\n",
        "poller.yaml:2: mistral.api_key: expected a string, got a number",
    ),
    (
        "number out of range",
        "mistral:\n  page_size: 5000\n",
        "poller.yaml:2: mistral.page_size: 5000 is too large; use 1000 or less",
    ),
    (
        "unknown choice",
        "log:\n  level: loud\n",
        "poller.yaml:2: log.level: unknown value 'loud'; use one of: debug, info, warning, error",
    ),
    (
        "bad duration",
        "poll:\n  interval: 5 minutes\n",
        "poller.yaml:2: poll.interval: '5 minutes' is not a duration; "
        "use e.g. 30, '500ms', '30s', '5m'",
    ),
    (
        "negative interval",
        "poll:\n  interval: -5\n",
        "poller.yaml:2: poll.interval: -5 is negative; durations must be zero or more",
    ),
    (
        "absurdly long interval",
        "poll:\n  interval: 99999999999999d\n",
        "poller.yaml:2: poll.interval: '99999999999999d' is too long; "
        "durations go up to 3650d (ten years)",
    ),
    (
        "zero interval",
        "poll:\n  interval: 0\n",
        "poller.yaml:2: poll.interval: 0 is not allowed here; the duration must be more than zero",
    ),
    (
        "zero in a workspace override",
        "mistral:\n  poll:\n    active_interval: 0s\n",
        "poller.yaml:3: mistral.poll.active_interval: '0s' is not allowed here; "
        "the duration must be more than zero",
    ),
    (
        "threshold out of range",
        "poll:\n  mass_delete_threshold: 0\n",
        "poller.yaml:2: poll.mass_delete_threshold: 0 is too small; it must be more than 0",
    ),
    (
        "mass deletion minimum not a count",
        "poll:\n  mass_delete_min: 0\n",
        "poller.yaml:2: poll.mass_delete_min: 0 is too small; use 1 or more",
    ),
    (
        "bad size",
        "proxy:\n  max_body: 20 megs\n",
        "poller.yaml:2: proxy.max_body: '20 megs' is not a size; "
        "use bytes or e.g. '512KiB', '20MiB', '1GB'",
    ),
    (
        "http sink without url",
        HTTP_SINK,
        "poller.yaml:2: sinks[0].url: missing; an http sink needs the URL that receives the "
        "webhooks, e.g. url: https://hooks.example.com/mistral",
    ),
    (
        "http sink url without a host",
        HTTP_SINK + "    url: https:///hook\n",
        "poller.yaml:4: sinks[0].url: the URL has no host; "
        "use e.g. https://hooks.example.com/mistral",
    ),
    (
        "http sink url that is not a URL",
        HTTP_SINK + "    url: hooks.example.com\n",
        "poller.yaml:4: sinks[0].url: the URL has no scheme; use an http:// or https:// URL, "
        "e.g. https://hooks.example.com/mistral",
    ),
    (
        "http sink url that cannot be parsed",
        HTTP_SINK + "    url: https://[::1/hook\n",
        "poller.yaml:4: sinks[0].url: the URL cannot be parsed; "
        "use e.g. https://hooks.example.com/mistral",
    ),
    (
        "http sink url with the ftp scheme",
        HTTP_SINK + "    url: ftp://files.example.com/hook\n",
        "poller.yaml:4: sinks[0].url: the URL has scheme 'ftp'; use an http:// or https:// URL, "
        "e.g. https://hooks.example.com/mistral",
    ),
    (
        "unknown placeholder in url",
        HTTP_SINK + "    url: https://hooks.example.com/{resource}/{status}\n",
        "poller.yaml:4: sinks[0].url: unknown placeholder {status} in the URL; "
        "only {resource} and {action} may appear",
    ),
    (
        "unmatched brace in url",
        HTTP_SINK + "    url: https://hooks.example.com/{resource\n",
        "poller.yaml:4: sinks[0].url: the URL has an unmatched { or }; "
        "placeholders look like {resource}",
    ),
    (
        "file sink without path",
        "sinks:\n  - name: audit\n    type: file\n",
        "poller.yaml:2: sinks[0].path: missing; a file sink needs the file to append events to, "
        "e.g. path: /var/log/poller/events.jsonl",
    ),
    (
        "sink without type",
        "sinks:\n  - name: ops\n",
        "poller.yaml:2: sinks[0].type: missing; use one of: "
        "file, http, log, nats, amqp, redis, mqtt",
    ),
    (
        "unknown sink type",
        "sinks:\n  - {name: a, type: log}\n  - {name: b, type: log}\n  - name: c\n    type: x\n",
        "poller.yaml:5: sinks[2].type: unknown sink type 'x'; use one of: "
        "file, http, log, nats, amqp, redis, mqtt",
    ),
    (
        "broker url of another scheme",
        "sinks:\n  - {name: n, type: nats, url: 'http://127.0.0.1:4222'}\n",
        "poller.yaml:2: sinks[0].url: the URL has scheme 'http'; use a nats:// or tls:// URL, "
        "e.g. nats://127.0.0.1:4222",
    ),
    (
        "wildcard in an mqtt topic",
        "sinks:\n  - {name: m, type: mqtt, url: 'mqtt://h', topic: 'poller/#'}\n",
        "poller.yaml:2: sinks[0].topic: '#' cannot appear here; use e.g. poller/{workspace}/{type}",
    ),
    (
        "key of another sink type",
        "sinks:\n  - name: ops\n    type: log\n    url: https://hooks.example.com/\n",
        "poller.yaml:4: sinks[0].url: unknown key 'url'; "
        "valid keys: name, events, workspaces, concurrency, retry, type, format",
    ),
    (
        "duplicate sink names",
        "sinks:\n  - {name: ops, type: log}\n  - {name: audit, type: log}\n"
        "  - {name: ops, type: log}\n",
        "poller.yaml:4: sinks[2].name: duplicate sink name 'ops' (also sinks[0]); "
        "give each sink its own name",
    ),
    (
        "bad sink name",
        "sinks:\n  - name: my sink\n    type: log\n",
        "poller.yaml:2: sinks[0].name: 'my sink' is not a valid sink name; "
        "use letters, digits, _, . and -",
    ),
    (
        "empty events",
        "sinks:\n  - name: ops\n    type: log\n    events: []\n",
        "poller.yaml:4: sinks[0].events: must not be empty",
    ),
    (
        "empty retry schedule",
        "sinks:\n  - name: ops\n    type: log\n    retry:\n      schedule: []\n",
        "poller.yaml:5: sinks[0].retry.schedule: must not be empty",
    ),
    (
        "concurrency out of range",
        "sinks:\n  - name: ops\n    type: log\n    concurrency: 0\n",
        "poller.yaml:4: sinks[0].concurrency: 0 is too small; use 1 or more",
    ),
    (
        "secret without the whsec_ prefix",
        HTTP_SINK + "    url: https://h.example/\n    secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n",
        "poller.yaml:5: sinks[0].secret: not a Standard Webhooks secret "
        "(expected whsec_ followed by base64)",
    ),
    (
        "secret that is not base64",
        HTTP_SINK + "    url: https://h.example/\n    secret: whsec_not*base64!\n",
        "poller.yaml:5: sinks[0].secret: not a Standard Webhooks secret "
        "(expected whsec_ followed by base64)",
    ),
    (
        "secret that is too short",
        HTTP_SINK + "    url: https://h.example/\n    secret: whsec_c2hvcnQ=\n",
        "poller.yaml:5: sinks[0].secret: the secret decodes to 5 bytes; use 24 to 64 random "
        "bytes, e.g. whsec_$(openssl rand -base64 32)",
    ),
    (
        "bad secret in a list",
        HTTP_SINK + f"    url: https://h.example/\n    secret:\n      - {SECRET}\n      - nope\n",
        "poller.yaml:7: sinks[0].secret[1]: not a Standard Webhooks secret "
        "(expected whsec_ followed by base64)",
    ),
    (
        "empty list of secrets",
        HTTP_SINK + "    url: https://h.example/\n    secret: []\n",
        "poller.yaml:5: sinks[0].secret: must not be empty",
    ),
    (
        "secrets spelled as the attribute",
        HTTP_SINK + f"    url: https://h.example/\n    secrets: [{SECRET}]\n",
        "poller.yaml:5: sinks[0].secrets: unknown key 'secrets'; did you mean 'secret'?",
    ),
    (
        "reserved header",
        HTTP_SINK + "    url: https://h.example/\n    headers:\n      Content-Type: text/plain\n",
        "poller.yaml:6: sinks[0].headers.Content-Type: 'Content-Type' is set by poller itself; "
        "remove it from headers",
    ),
    (
        "header value that is not a string",
        HTTP_SINK + "    url: https://h.example/\n    headers:\n      X-Retries: 3\n",
        "poller.yaml:6: sinks[0].headers.X-Retries: expected a string, got a number",
    ),
    (
        "unsupported store URL",
        "store:\n  url: mysql://poller:hunter2@db.example/poller\n",
        "poller.yaml:2: store.url: unsupported store URL 'mysql://poller:***@db.example/poller'; "
        "use sqlite:///PATH or postgresql://USER@HOST/DB",
    ),
    (
        "in-memory store",
        "store:\n  url: 'sqlite:///:memory:'\n",
        "poller.yaml:2: store.url: an in-memory SQLite database is lost when poller stops; "
        "use sqlite:///PATH to a file, e.g. sqlite:////var/lib/poller/poller.db",
    ),
    (
        "store URL without a path",
        "store:\n  url: 'sqlite://'\n",
        "poller.yaml:2: store.url: an in-memory SQLite database is lost when poller stops; "
        "use sqlite:///PATH to a file, e.g. sqlite:////var/lib/poller/poller.db",
    ),
    ("empty file", "", "poller.yaml: the file is empty; see config/poller.example.yaml"),
    (
        "file of comments only",
        "# nothing yet\n",
        "poller.yaml: the file is empty; see config/poller.example.yaml",
    ),
    (
        "list document",
        "- mistral\n- sinks\n",
        "poller.yaml:1: the file must be a mapping of sections (mistral, store, poll, sinks, ...), "
        "not a list; see config/poller.example.yaml",
    ),
    (
        "scalar document",
        "hello\n",
        "poller.yaml:1: the file must be a mapping of sections (mistral, store, poll, sinks, ...), "
        "not a string; see config/poller.example.yaml",
    ),
    (
        "yaml syntax error",
        "poll:\n  interval: 5s\n  timeout [2m\n",
        "poller.yaml:4: invalid YAML: while scanning a simple key, could not find expected ':'",
    ),
    (
        "yaml syntax error from an unquoted reference in a flow mapping",
        "mistral: {api_key: ${KEY}}\n",
        "poller.yaml:1: invalid YAML: while parsing a flow mapping, expected ',' or '}', "
        "but got '{'; quote values that hold ${...} inside [...] or {...}",
    ),
    (
        "duplicate key",
        "poll:\n  interval: 5s\n  interval: 10s\n",
        "poller.yaml:3: poll.interval: duplicate key 'interval'; give each key once",
    ),
    (
        "key that is not a string",
        "sinks:\n  - name: ops\n    type: log\n    1: x\n",
        "poller.yaml:4: sinks[0]: the key 1 is not a string; quote it",
    ),
    (
        "both mistral and workspaces",
        "mistral:\n  name: a\nworkspaces:\n  - name: b\n",
        "poller.yaml:3: workspaces: give either mistral: (one workspace) or workspaces: (a list), "
        "not both",
    ),
    (
        "duplicate workspace names",
        "workspaces:\n  - name: prod\n  - name: prod\n",
        "poller.yaml:3: workspaces[1].name: duplicate workspace name 'prod' (also workspaces[0]); "
        "give each workspace its own name",
    ),
    (
        "workspace without a name",
        "workspaces:\n  - name: prod\n  - base_url: https://api.example/v1\n",
        "poller.yaml:3: workspaces[1].name: missing; every entry here needs a name",
    ),
    (
        "empty workspaces",
        "workspaces: []\n",
        "poller.yaml:1: workspaces: must not be empty",
    ),
    (
        "bad workspace name",
        "mistral:\n  name: Prod\n",
        "poller.yaml:2: mistral.name: 'Prod' is not a valid workspace name; use lowercase "
        "letters, digits, _ and - (up to 63, starting with a letter or digit)",
    ),
    (
        "base_url without http",
        "mistral:\n  base_url: api.mistral.ai/v1\n",
        "poller.yaml:2: mistral.base_url: the URL has no scheme; use an http:// or https:// URL, "
        "e.g. https://api.mistral.ai/v1",
    ),
    (
        "base_url with credentials",
        "mistral:\n  base_url: https://gw:gate-pass@api.example/v1\n",
        "poller.yaml:2: mistral.base_url: the URL carries a user name or password, which would "
        "be sent instead of the API key; remove it and set api_key (and auth_header, "
        "auth_scheme) instead",
    ),
    (
        "sink referencing an unknown workspace",
        "workspaces:\n  - name: prod\nsinks:\n  - name: ops\n    type: log\n"
        "    workspaces: [prod, staging]\n",
        "poller.yaml:6: sinks[0].workspaces[1]: unknown workspace 'staging'; known: prod",
    ),
    (
        "proxy inject_key without token",
        "mistral:\n  api_key: sk-test\nproxy:\n  inject_key: true\n",
        "poller.yaml:4: proxy.inject_key: inject_key: true needs a token that local clients must "
        "send; set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
    ),
    (
        "proxy inject_key on a public address",
        "mistral:\n  api_key: sk-test\nproxy:\n  inject_key: true\n  token: t0ken\n"
        "  listen: 0.0.0.0:8787\n",
        "poller.yaml:6: proxy.listen: '0.0.0.0:8787' is not a loopback address; with "
        "inject_key: true the proxy must listen on 127.0.0.1, ::1 or localhost",
    ),
    (
        "proxy token without inject_key",
        "proxy:\n  token: t0ken\n",
        "poller.yaml:2: proxy.token: a token is only used with inject_key: true (clients then "
        "send it instead of an API key); remove it or set inject_key: true",
    ),
    (
        "proxy inject_key without an API key to inject",
        "proxy:\n  inject_key: true\n  token: t0ken\n",
        "poller.yaml:2: proxy.inject_key: workspace 'default' has no api_key to inject; set its "
        "api_key, or let clients send their own key (inject_key: false)",
    ),
    (
        "proxy hosts with a bad name",
        "proxy:\n  hosts: ['poller internal']\n",
        "poller.yaml:2: proxy.hosts[0]: 'poller internal' is not a host name; use a name such "
        "as poller or poller.internal",
    ),
    (
        "proxy with an unknown workspace",
        "proxy:\n  workspace: staging\n",
        "poller.yaml:2: proxy.workspace: unknown workspace 'staging'; known: default",
    ),
    (
        "ops.listen without a port",
        "ops:\n  listen: localhost\n",
        "poller.yaml:2: ops.listen: 'localhost' is not HOST:PORT; "
        "use e.g. 127.0.0.1:9464, [::1]:9464 or localhost:9464",
    ),
    (
        "ops.listen with a port out of range",
        "ops:\n  listen: 127.0.0.1:70000\n",
        "poller.yaml:2: ops.listen: port 70000 is out of range; use 1 to 65535",
    ),
    (
        "missing environment variable",
        HTTP_SINK + "    url: https://h.example/\n    secret: ${WEBHOOK_SECRET}\n",
        "poller.yaml:5: sinks[0].secret: environment variable WEBHOOK_SECRET is not set; "
        "export it or write the value in the file",
    ),
    (
        "unterminated reference",
        "mistral:\n  auth_scheme: ${OOPS\n",
        "poller.yaml:2: mistral.auth_scheme: unterminated ${; close it with } "
        "or write $${ for a literal ${",
    ),
    (
        "invalid reference",
        "mistral:\n  auth_scheme: ${1X}\n",
        "poller.yaml:2: mistral.auth_scheme: '${1X}' is not a valid reference; "
        "use ${NAME} or ${NAME:-default}",
    ),
]


@pytest.mark.parametrize(("text", "message"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_message(text: str, message: str) -> None:
    """Each invalid file gives the one documented line: file, line, key, what to change."""
    assert str(error(text)) == message


@pytest.mark.parametrize("text", [e[1] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_error_is_one_line_without_pydantic_text(text: str) -> None:
    """No message spans lines or leaks pydantic wording, links or tracebacks."""
    message = str(error(text))
    assert "\n" not in message
    for leak in ("pydantic", "Input should", "Value error", "For further information", "Traceback"):
        assert leak not in message


def test_error_carries_its_parts() -> None:
    """ConfigError exposes the file, line and dotted key besides the rendered line."""
    exc = error("sinks:\n  - name: ops\n    type: log\n    concurrency: 999\n")
    assert (exc.path, exc.line, exc.key) == ("poller.yaml", 4, "sinks[0].concurrency")


def test_first_error_in_file_order() -> None:
    """With several problems, the one nearest the top of the file is reported."""
    exc = error("log:\n  level: loud\npoll:\n  interval: -1\n  timeout: 0\n")
    assert (exc.line, exc.key) == (2, "log.level")


@pytest.mark.parametrize(
    ("text", "environ", "leaked"),
    [
        (
            HTTP_SINK + "    url: https://h.example/\n    secret: ${S}\n",
            {"S": "whsec_TOPSECRETVALUE!"},
            "TOPSECRETVALUE",
        ),
        (
            HTTP_SINK + "    url: https://h.example/\n    secret: ${S}\n",
            {"S": "whsec_c2hvcnQ="},
            "c2hvcnQ",
        ),
        ("store:\n  url: mysql://u:hunter2@db/x\n", {}, "hunter2"),
        ("store:\n  url: mysql://u:p@ss:w0rd@db/x\n", {}, "w0rd"),
        ("mistral:\n  api_key: ${K}\n  page_size: 0\n", {"K": "sk-live-abc"}, "sk-live-abc"),
        ("proxy:\n  inject_key: true\n  token: tok-xyz\n  listen: 10.0.0.1:1\n", {}, "tok-xyz"),
    ],
    ids=["bad secret", "short secret", "store password", "password with @", "api key", "token"],
)
def test_secrets_stay_out_of_errors(text: str, environ: dict[str, str], leaked: str) -> None:
    """No error message repeats a secret value."""
    assert leaked not in str(error(text, environ))


def test_secrets_stay_out_of_repr() -> None:
    """repr() and str() of a loaded config show no key, secret, token, password or header."""
    environ = {**EXAMPLE_ENV, "POLLER_STORE_URL": "postgresql://poller:hunter2@db/poller"}
    loaded = config.load(EXAMPLE, environ=environ)
    for shown in (repr(loaded), str(loaded)):
        for value in (*EXAMPLE_ENV.values(), "hunter2"):
            assert value not in shown
        assert "'X-Team': 'ml'" not in shown
    assert loaded.store.url == "postgresql://poller:hunter2@db/poller"


def test_secrets_are_readable_by_code() -> None:
    """Code that needs a secret reads it with get_secret_value()."""
    loaded = config.load(EXAMPLE, environ=EXAMPLE_ENV)
    sink = loaded.sinks[0]
    assert isinstance(sink, config.HttpSinkConfig)
    assert [s.get_secret_value() for s in sink.secrets] == [SECRET]
    assert loaded.workspaces[0].api_key is not None
    assert loaded.workspaces[0].api_key.get_secret_value() == "sk-prod-1234567890"
    assert loaded.proxy is not None and loaded.proxy.token is not None
    assert loaded.proxy.token.get_secret_value() == "proxy-token-abcdef"


# --------------------------------------------------------------------------- ${VAR} expansion


@pytest.mark.parametrize(
    ("value", "environ", "expected"),
    [
        ("${A}", {"A": "x"}, "x"),
        ("pre-${A}-post", {"A": "x"}, "pre-x-post"),
        ("${A}${B}", {"A": "x", "B": "y"}, "xy"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-a b:c}", {}, "a b:c"),
        ("${A}", {"A": ""}, ""),
        ("$${A}", {}, "${A}"),
        ("cost $$5 and $A", {}, "cost $$5 and $A"),
        ("${A}", {"A": "${B}"}, "${B}"),
        ("${A}", {"A": "x: [1, {y"}, "x: [1, {y"),
        ("'${A}'", {"A": "quoted"}, "quoted"),
    ],
    ids=[
        "whole value",
        "inside a longer string",
        "two references",
        "default when unset",
        "default when empty",
        "set value beats default",
        "empty default",
        "default with spaces and colons",
        "set but empty",
        "$${ escapes",
        "lone dollars stay",
        "values are not expanded twice",
        "values are not parsed as YAML",
        "quoted scalar",
    ],
)
def test_expansion(value: str, environ: dict[str, str], expected: str) -> None:
    """${VAR} is replaced in string values after parsing, with :- defaults and $${ escapes."""
    loaded = parse(f"mistral:\n  auth_scheme: {value}\n", environ)
    assert loaded.workspaces[0].auth_scheme == expected


def test_expansion_reaches_every_section() -> None:
    """References work in nested mappings, lists, numbers and durations alike."""
    environ = {"HOST": "hooks.example.com", "EV": "batch_job.*", "N": "250", "T": "45s"}
    loaded = parse(
        """\
        mistral:
          page_size: ${N}
          poll:
            interval: ${T}
        sinks:
          - name: ops
            type: http
            url: https://${HOST}/hook
            events: ["${EV}"]
        """,
        environ,
    )
    sink = loaded.sinks[0]
    assert isinstance(sink, config.HttpSinkConfig)
    assert (sink.url, sink.events) == ("https://hooks.example.com/hook", ("batch_job.*",))
    assert loaded.workspaces[0].page_size == 250
    assert loaded.workspaces[0].poll.interval == 45.0


def test_expansion_leaves_keys_alone() -> None:
    """Keys are never expanded, so a reference in a key is an unknown key."""
    assert "unknown key '${K}'" in str(error("poll:\n  ${K}: 5\n", {"K": "interval"}))


def test_empty_api_key_means_no_key() -> None:
    """An api_key that expands to "" is treated as absent (no auth header)."""
    loaded = parse("mistral:\n  api_key: ${MISTRAL_API_KEY:-}\n")
    assert loaded.workspaces[0].api_key is None


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("500ms", 0.5), (30, 30.0), (1.5, 1.5), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0),
     ("3d", 259200.0), ("'45'", 45.0)],
)  # fmt: skip
def test_durations(value: object, seconds: float) -> None:
    """Durations are numbers of seconds or strings with ms, s, m, h or d."""
    assert parse(f"poll:\n  timeout: {value}\n").workspaces[0].poll.timeout == seconds


def test_zero_grace_period_is_allowed() -> None:
    """shutdown.grace_period may be zero (stop at once)."""
    assert parse("shutdown:\n  grace_period: 0\n").shutdown.grace_period == 0.0


@pytest.mark.parametrize(
    ("value", "size"),
    [(1048576, 1048576), ("20MiB", 20 * 1024**2), ("1.5KiB", 1536), ("1KB", 1000),
     ("2GB", 2 * 10**9), ("1GiB", 1024**3), ("64B", 64)],
)  # fmt: skip
def test_sizes(value: object, size: int) -> None:
    """Sizes are bytes or strings with B, KiB, MiB, GiB, KB, MB or GB."""
    proxy = parse(f"proxy:\n  max_body: {value}\n").proxy
    assert proxy is not None and proxy.max_body == size


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:9464", "0.0.0.0:1", "[::1]:9464", "[::]:65535", "localhost:80",
     "metrics.internal.example:9464"],
)  # fmt: skip
def test_listen_accepted(listen: str) -> None:
    """ops.listen takes IPv4:port, [IPv6]:port or name:port."""
    assert parse(f"ops:\n  listen: '{listen}'\n").ops.listen == listen


@pytest.mark.parametrize(
    "listen", ["9464", ":9464", "::1:9464", "[::1]", "[nothost]:1", "host:0", "a b:1", "host:x"]
)
def test_listen_refused(listen: str) -> None:
    """Anything but HOST:PORT with a port in 1..65535 is refused at ops.listen."""
    assert error(f"ops:\n  listen: '{listen}'\n").key == "ops.listen"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [("127.0.0.1:9464", "127.0.0.1", 9464), ("[::1]:80", "::1", 80), ("db:5", "db", 5)],
)
def test_split_listen(listen: str, host: str, port: int) -> None:
    """split_listen gives the host (without brackets) and the port."""
    assert config.split_listen(listen) == (host, port)


@pytest.mark.parametrize("listen", ["127.0.0.1:8787", "127.1.2.3:1", "[::1]:8787", "localhost:1"])
def test_proxy_inject_key_on_loopback(listen: str) -> None:
    """inject_key is allowed on any loopback address."""
    text = (
        f"mistral:\n  api_key: k3y\nproxy:\n  inject_key: true\n  token: t\n  listen: '{listen}'\n"
    )
    proxy = parse(text).proxy
    assert proxy is not None and proxy.inject_key


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///poller.db", "sqlite:///poller.db"),
        ("sqlite:////var/lib/poller/poller.db", "sqlite:////var/lib/poller/poller.db"),
        ("postgresql://poller@db/poller", "postgresql://poller@db/poller"),
        ("postgresql+psycopg://poller:pw@db:5432/poller", "postgresql+psycopg://poller:pw@db:5432/poller"),
    ],
)  # fmt: skip
def test_store_urls_accepted(url: str, expected: str) -> None:
    """SQLite files and PostgreSQL URLs are accepted as written."""
    assert parse(f"store:\n  url: '{url}'\n").store.url == expected


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "sqlite:////var/lib/poller/poller.db"),
        ({"STATE_DIRECTORY": "/var/lib/poller-a"}, "sqlite:////var/lib/poller-a/poller.db"),
        ({"STATE_DIRECTORY": "/srv/a/:/srv/b"}, "sqlite:////srv/a/poller.db"),
    ],
)
def test_store_default(environ: dict[str, str], url: str) -> None:
    """Without store.url the database lives in $STATE_DIRECTORY, else /var/lib/poller."""
    assert parse("log: {}\n", environ).store.url == url


def test_store_repr_masks_password() -> None:
    """The store URL shows its password as *** in repr()."""
    store = config.StoreConfig(url="postgresql://u:hunter2@db/x")
    assert repr(store) == "StoreConfig(url='postgresql://u:***@db/x')"


# --------------------------------------------------------------------------- normalisation


def test_defaults() -> None:
    """A file with nothing but an empty section gives the documented defaults."""
    loaded = parse("log: {}\n")
    (workspace,) = loaded.workspaces
    assert (workspace.name, workspace.base_url, workspace.api_key) == (
        "default",
        "https://api.mistral.ai/v1",
        None,
    )
    assert (workspace.auth_header, workspace.auth_scheme) == ("Authorization", "Bearer")
    assert (workspace.timeout, workspace.page_size, workspace.max_requests_per_minute) == (
        30.0,
        100,
        None,
    )
    assert workspace.poll == config.PollConfig()
    assert workspace.sources.enabled() == config.SOURCE_NAMES
    assert loaded.sinks == (config.LogSinkConfig(name="log"),)
    assert loaded.sinks[0].events == ("*",)
    assert (loaded.ops.listen, loaded.proxy) == (None, None)
    assert (loaded.log.level, loaded.log.format, loaded.shutdown.grace_period) == (
        "info",
        "auto",
        10.0,
    )
    assert loaded.source == "poller.yaml"


@pytest.mark.parametrize("section", ["mistral", "poll", "sources", "store", "sinks", "proxy"])
def test_null_section_means_defaults(section: str) -> None:
    """A section written with no value behaves as if it were absent."""
    assert parse(f"{section}:\n").workspaces[0].name == "default"


def test_single_workspace_becomes_a_tuple() -> None:
    """A mistral: block becomes the only entry of Config.workspaces."""
    loaded = parse("mistral:\n  name: main\n  base_url: http://127.0.0.1:8000/v1/\n")
    assert [(w.name, w.base_url) for w in loaded.workspaces] == [
        ("main", "http://127.0.0.1:8000/v1")
    ]


def test_workspace_lookup() -> None:
    """Config.workspace(name) finds a workspace and raises KeyError for others."""
    loaded = parse("workspaces:\n  - name: a\n  - name: b\n")
    assert loaded.workspace("b").name == "b"
    with pytest.raises(KeyError):
        loaded.workspace("c")


MERGE = """\
poll:
  interval: 20s
  active_interval: 4s
  emit_existing: true
sources:
  files:
    interval: 2m
  models: false
workspaces:
  - name: plain
  - name: tuned
    poll:
      interval: 1m
      mass_delete_threshold: 0.2
      mass_delete_min: 3
    sources:
      files:
        active_interval: 1s
      models:
        enabled: true
      batch_jobs: false
"""


@pytest.mark.parametrize(
    ("workspace", "attribute", "expected"),
    [
        ("plain", "poll.interval", 20.0),
        ("plain", "poll.emit_existing", True),
        ("plain", "poll.mass_delete_threshold", 0.5),
        ("tuned", "poll.interval", 60.0),
        ("tuned", "poll.active_interval", 4.0),
        ("tuned", "poll.emit_existing", True),
        ("tuned", "poll.mass_delete_threshold", 0.2),
        ("plain", "poll.mass_delete_min", 10),
        ("tuned", "poll.mass_delete_min", 3),
        ("plain", "sources.batch_jobs.interval", 20.0),
        ("plain", "sources.files.interval", 120.0),
        ("plain", "sources.files.active_interval", 4.0),
        ("plain", "sources.models.enabled", False),
        ("tuned", "sources.batch_jobs.enabled", False),
        ("tuned", "sources.fine_tuning_jobs.interval", 60.0),
        ("tuned", "sources.files.interval", 120.0),
        ("tuned", "sources.files.active_interval", 1.0),
        ("tuned", "sources.models.enabled", True),
        ("tuned", "sources.models.interval", 60.0),
    ],
)
def test_overrides_merge(workspace: str, attribute: str, expected: object) -> None:
    """Workspace poll/sources override the top level key by key; the rest is inherited."""
    value: Any = parse(MERGE).workspace(workspace)
    for name in attribute.split("."):
        value = getattr(value, name)
    assert value == expected


ALL = config.SOURCE_NAMES
NO_MODELS = ("batch_jobs", "fine_tuning_jobs", "files", "libraries", "workflow_runs")
TOP_NO_MODELS = "sources:\n  models: false\n"


@pytest.mark.parametrize(
    ("text", "enabled"),
    [
        (TOP_NO_MODELS, NO_MODELS),
        ("sources:\n  files: {}\n", ALL),
        ("sources:\n  files:\n", ALL),
        (
            "sources:\n  files: {enabled: false}\n  batch_jobs: false\n",
            ("fine_tuning_jobs", "models", "libraries", "workflow_runs"),
        ),
        (TOP_NO_MODELS + "mistral:\n  sources:\n    models: true\n", ALL),
        (TOP_NO_MODELS + "mistral:\n  sources:\n    models: {}\n", NO_MODELS),
    ],
    ids=[
        "false disables",
        "{} enables",
        "null enables",
        "enabled: false",
        "workspace re-enables",
        "workspace {} inherits",
    ],
)
def test_enabled_sources(text: str, enabled: tuple[str, ...]) -> None:
    """SourcesConfig.enabled() lists enabled sources in their fixed order."""
    assert parse(text).workspaces[0].sources.enabled() == enabled


@pytest.mark.parametrize(
    ("source", "key"), [("batch_jobs", "emit_started"), ("workflow_runs", "include_internal")]
)
def test_a_source_key_of_its_own_is_inherited(source: str, key: str) -> None:
    """A source's own key, false by default, set at the top level, holds in a workspace
    unless it says otherwise."""
    text = (
        f"sources:\n  {source}: {{{key}: true}}\n"
        "workspaces:\n  - name: a\n  - name: b\n    sources:\n"
        f"      {source}: {{{key}: false, interval: 9s}}\n"
    )
    loaded = parse(text)
    a, b = (getattr(loaded.workspace(n).sources, source) for n in ("a", "b"))
    assert (getattr(a, key), getattr(b, key), b.interval) == (True, False, 9.0)
    assert getattr(getattr(parse("poll:\n").workspaces[0].sources, source), key) is False


@pytest.mark.parametrize(
    ("source", "key"), [("files", "emit_started"), ("batch_jobs", "include_internal")]
)
def test_a_source_key_of_another_source_is_refused(source: str, key: str) -> None:
    """emit_started belongs to batch_jobs, include_internal to workflow_runs: elsewhere,
    each is an unknown key."""
    with pytest.raises(ConfigError, match=f"unknown key '{key}'"):
        parse(f"sources:\n  {source}: {{{key}: true}}\n")


def test_json_schema_knows_include_internal() -> None:
    """The schema takes workflow_runs.include_internal as a boolean, on workflow_runs alone."""
    validator = jsonschema.Draft202012Validator(config.json_schema())
    assert validator.is_valid({"sources": {"workflow_runs": {"include_internal": True}}})
    assert not validator.is_valid({"sources": {"workflow_runs": {"include_internal": "yes"}}})
    assert not validator.is_valid({"sources": {"files": {"include_internal": True}}})


def test_sources_get() -> None:
    """SourcesConfig.get(name) returns that source and raises KeyError for others."""
    sources = parse("sources:\n  files: {interval: 9s}\n").workspaces[0].sources
    assert sources.get("files").interval == 9.0
    with pytest.raises(KeyError):
        sources.get("jobs")


@pytest.mark.parametrize(
    ("secret", "count"),
    [(None, 0), (SECRET, 1), ([SECRET, "whsec_" + "A" * 86 + "=="], 2)],
    ids=["absent", "one string", "a list"],
)
def test_http_sink_secrets(secret: object, count: int) -> None:
    """secret: may be absent, one string or a list; secrets is always a tuple."""
    sink: dict[str, Any] = {"name": "ops", "type": "http", "url": "https://h.example/"}
    if secret is not None:
        sink["secret"] = secret
    loaded = config.from_mapping({"sinks": [sink]})
    assert isinstance(loaded.sinks[0], config.HttpSinkConfig)
    assert len(loaded.sinks[0].secrets) == count


def test_http_sink_built_in_python() -> None:
    """Code may build an HttpSinkConfig with secrets=, and the secrets are still checked."""
    sink = config.HttpSinkConfig(name="ops", url="https://h.example/", secrets=(SecretStr(SECRET),))
    assert [s.get_secret_value() for s in sink.secrets] == [SECRET]
    with pytest.raises(pydantic.ValidationError):
        config.HttpSinkConfig(name="ops", url="https://h.example/", secrets=(SecretStr("x"),))


@pytest.mark.parametrize(
    ("events", "workspaces", "event_type", "workspace", "expected"),
    [
        (["*"], None, "batch_job.succeeded", "prod", True),
        (["batch_job.*"], None, "batch_job.failed", "prod", True),
        (["batch_job.*"], None, "file.created", "prod", False),
        (["file.created", "model.*"], None, "model.deleted", "prod", True),
        (["*"], ["prod"], "file.created", "prod", True),
        (["*"], ["prod"], "file.created", "staging", False),
        (["Batch_job.*"], None, "batch_job.failed", "prod", False),
    ],
    ids=["all", "glob", "glob miss", "second glob", "workspace hit", "workspace miss", "case"],
)
def test_sink_matches(
    events: list[str], workspaces: list[str] | None, event_type: str, workspace: str, expected: bool
) -> None:
    """A sink wants an event when a glob matches its type and its workspace is listed."""
    sink = config.LogSinkConfig(name="log", events=tuple(events), workspaces=workspaces)
    assert sink.matches(event_type, workspace) is expected


def test_proxy_defaults_to_first_workspace() -> None:
    """proxy.workspace defaults to the first workspace, and enabled to true."""
    proxy = parse("workspaces:\n  - name: a\n  - name: b\nproxy: {}\n").proxy
    assert proxy is not None
    assert (proxy.workspace, proxy.enabled, proxy.listen) == ("a", True, "127.0.0.1:8787")
    assert (proxy.max_body, proxy.max_body_ocr, proxy.read_timeout) == (
        20 * 1024**2,
        100 * 1024**2,
        600.0,
    )


def test_proxy_queue_size() -> None:
    """proxy.queue_size defaults to 10000, takes a positive integer and refuses 0."""
    assert (proxy := parse("proxy: {}\n").proxy) is not None and proxy.queue_size == 10_000
    assert (proxy := parse("proxy: {queue_size: 5}\n").proxy) is not None and proxy.queue_size == 5
    message = str(error("proxy:\n  queue_size: 0\n"))
    assert message.startswith("poller.yaml:2: proxy.queue_size: ")
    assert "\n" not in message


def test_models_are_frozen() -> None:
    """Config objects cannot be changed after loading."""
    loaded = parse("log: {}\n")
    with pytest.raises(pydantic.ValidationError):
        loaded.log.level = "debug"  # type: ignore[misc]


def test_anchors_and_merge_keys() -> None:
    """YAML anchors and << merge keys work, and a mapping's own keys win."""
    loaded = parse(
        """\
        sinks:
          - &base {name: a, type: log, concurrency: 2}
          - <<: *base
            name: b
        """
    )
    assert [(s.name, s.concurrency) for s in loaded.sinks] == [("a", 2), ("b", 2)]


# --------------------------------------------------------------------------- files and paths


@pytest.mark.parametrize(
    ("cli", "environ", "expected"),
    [
        ("/cli.yaml", {"POLLER_CONFIG": "/env.yaml"}, "/cli.yaml"),
        (None, {"POLLER_CONFIG": "/env.yaml"}, "/env.yaml"),
        (None, {}, config.DEFAULT_CONFIG_PATH),
        ("", {"POLLER_CONFIG": ""}, config.DEFAULT_CONFIG_PATH),
    ],
    ids=["--config wins", "then $POLLER_CONFIG", "then the default", "empty values ignored"],
)
def test_resolve_path(cli: str | None, environ: dict[str, str], expected: str) -> None:
    """--config beats $POLLER_CONFIG, which beats /etc/poller/poller.yaml."""
    assert config.resolve_path(cli, environ) == pathlib.Path(expected)


def test_resolve_path_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument, resolve_path reads os.environ."""
    monkeypatch.setenv("POLLER_CONFIG", "/from/os.yaml")
    assert config.resolve_path(None) == pathlib.Path("/from/os.yaml")


def test_load_names_the_file(tmp_path: pathlib.Path) -> None:
    """Errors from load() name the file that was read."""
    path = tmp_path / "poller.yaml"
    path.write_text("poll:\n  interval: 0\n")
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={})
    assert str(info.value).startswith(f"{path}:2: poll.interval: ")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("missing.yaml", "No such file or directory"), (".", "Is a directory")],
)
def test_load_unreadable(tmp_path: pathlib.Path, name: str, reason: str) -> None:
    """A file that cannot be read says why and how to point at another one."""
    path = tmp_path / name
    with pytest.raises(ConfigError) as info:
        config.load(path, environ={})
    assert str(info.value) == (
        f"{path}: cannot read the config file: {reason}; pass --config PATH or set POLLER_CONFIG"
    )


def test_load_reads_os_environ(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an environ argument, references are expanded from os.environ."""
    monkeypatch.setenv("POLLER_TEST_SCHEME", "Token")
    path = tmp_path / "poller.yaml"
    path.write_text("mistral:\n  auth_scheme: ${POLLER_TEST_SCHEME}\n")
    assert config.load(path).workspaces[0].auth_scheme == "Token"


def test_from_mapping_errors_have_no_line() -> None:
    """from_mapping reports the key but no line, since there is no file."""
    with pytest.raises(ConfigError) as info:
        config.from_mapping({"poll": {"interval": -5}}, source="demo")
    assert str(info.value) == "demo: poll.interval: -5 is negative; durations must be zero or more"


def test_from_mapping_does_not_expand() -> None:
    """from_mapping takes values as they are: ${...} is not expanded."""
    loaded = config.from_mapping({"mistral": {"auth_scheme": "${X}"}})
    assert loaded.workspaces[0].auth_scheme == "${X}"


# --------------------------------------------------------------------------- example and schema


def example_data() -> Any:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_loads() -> None:
    """config/poller.example.yaml is valid once its environment variables are set."""
    loaded = config.load(EXAMPLE, environ=EXAMPLE_ENV)
    assert [w.name for w in loaded.workspaces] == ["prod", "research"]
    assert [s.type for s in loaded.sinks] == [
        "http",
        "file",
        "log",
        "nats",
        "amqp",
        "redis",
        "mqtt",
    ]
    assert loaded.proxy is not None and loaded.proxy.inject_key


def test_example_needs_its_variables() -> None:
    """The example names the variable it is missing."""
    environ = {k: v for k, v in EXAMPLE_ENV.items() if k != "WEBHOOK_SECRET"}
    with pytest.raises(ConfigError, match="environment variable WEBHOOK_SECRET is not set"):
        config.load(EXAMPLE, environ=environ)


def schema_keys(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        found.update(schema.get("properties", {}))
        for value in schema.values():
            found |= schema_keys(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= schema_keys(value)
    return found


def data_keys(data: Any) -> set[str]:
    if isinstance(data, dict):
        return set(data).union(*(data_keys(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(data_keys(v) for v in data))
    return set()


def test_example_covers_every_option() -> None:
    """Every key of the file format appears in the example (mistral: and ha: as comments)."""
    missing = schema_keys(config.json_schema()) - data_keys(example_data())
    assert missing == {"mistral", "ha", "lease_ttl", "replica_id"}
    text = EXAMPLE.read_text()
    assert "\n# mistral:\n" in text
    assert "\n# ha:\n#   lease_ttl: 15s" in text and "\n#   replica_id: " in text


def test_json_schema_is_valid_draft_2020_12() -> None:
    """json_schema() is a valid draft 2020-12 schema and says so."""
    schema = config.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_json_schema_accepts_the_example() -> None:
    """The example file, parsed but not expanded, is valid against the schema."""
    jsonschema.Draft202012Validator(config.json_schema()).validate(example_data())


@pytest.mark.parametrize(
    "data",
    [
        {"poll": {"intervall": 5}},
        {"poll": {"interval": "5 minutes"}},
        {"sinks": [{"name": "ops", "type": "carrier-pigeon"}]},
        {"sinks": [{"name": "ops"}]},
        {"mistral": {}, "workspaces": [{"name": "a"}]},
        {"workspaces": [{"base_url": "https://x"}]},
        {"proxy": {"max_body": 1.5}},
    ],
    ids=["unknown key", "bad duration", "unknown sink type", "sink without type",
         "both workspace forms", "workspace without name", "fractional size"],
)  # fmt: skip
def test_json_schema_refuses(data: dict[str, Any]) -> None:
    """The schema refuses what the loader refuses, where JSON Schema can say so."""
    validator = jsonschema.Draft202012Validator(config.json_schema())
    assert not validator.is_valid(data)


def test_json_schema_hides_secrets() -> None:
    """Secret fields are write-only strings without defaults in the schema."""
    schema = config.json_schema()
    token = schema["$defs"]["ProxySection"]["properties"]["token"]
    assert token["default"] is None
    assert token["anyOf"][0]["writeOnly"] is True
    assert "whsec_" not in json.dumps(schema)


DOC_EXAMPLES = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(), re.DOTALL)


@pytest.mark.parametrize("text", DOC_EXAMPLES, ids=[f"docs-{i}" for i in range(len(DOC_EXAMPLES))])
def test_documented_examples_load(text: str) -> None:
    """Every YAML example in docs/configuration.md is valid."""
    names = re.findall(r"\$\{([A-Z_]+)", text)
    parse(text, {name: SECRET for name in names})


DOC_ERRORS = re.findall(r"^poller\.yaml:.*$", DOCS.read_text(), re.MULTILINE)


@pytest.mark.parametrize("line", DOC_ERRORS)
def test_documented_errors_are_real(line: str) -> None:
    """Every error line shown in docs/configuration.md is one the tests above produce."""
    assert line in {message for _, _, message in ERRORS}


PG_STORE = "store:\n  url: postgresql+psycopg://poller@db.internal/poller\n"


def test_ha_defaults_need_no_section() -> None:
    """Without `ha:`, leases last 15s and the replica id is worked out at start."""
    loaded = parse(PG_STORE)
    assert (loaded.ha.lease_ttl, loaded.ha.replica_id) == (15.0, None)


def test_ha_section_on_postgresql() -> None:
    """`ha.lease_ttl` takes a duration and `ha.replica_id` a name."""
    loaded = parse(PG_STORE + "ha:\n  lease_ttl: 2s\n  replica_id: pod-a\n")
    assert (loaded.ha.lease_ttl, loaded.ha.replica_id) == (2.0, "pod-a")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "ha:\n  lease_ttl: 2s\n",
            "poller.yaml:1: ha: HA needs a PostgreSQL store shared by the replicas; set "
            "store.url to postgresql+psycopg://… or remove the ha: section (a SQLite store "
            "runs one daemon)",
        ),
        (
            PG_STORE + "ha:\n  lease_ttl: 500ms\n",
            "poller.yaml:4: ha.lease_ttl: '500ms' is too short; a lease TTL is at least 1s "
            "(e.g. '15s')",
        ),
        (
            PG_STORE + "ha:\n  ttl: 2s\n",
            "poller.yaml:4: ha.ttl: unknown key",
        ),
    ],
)
def test_ha_section_errors(text: str, expected: str) -> None:
    """A bad `ha:` section is one line saying what to change."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    assert str(caught.value).startswith(expected)


def lines(text: str, environ: dict[str, str] | None = None) -> list[str]:
    return str(error(text, environ)).splitlines()


def test_every_problem_is_reported_in_file_order() -> None:
    """Unset variables, unknown keys and bad values anywhere are all reported, one line each."""
    text = (
        "mistral:\n  api_key: ${KEY_ONE}\n  timeoutt: 5s\n"
        "poll:\n  interval: soon\n  intervall: 5s\n"
        "sinks:\n  - name: a\n    type: log\n    concurrency: -1\n"
        "ops:\n  listen: ${LISTEN}\n"
    )
    assert lines(text) == [
        "poller.yaml:2: mistral.api_key: environment variable KEY_ONE is not set; "
        "export it or write the value in the file",
        "poller.yaml:3: mistral.timeoutt: unknown key 'timeoutt'; did you mean 'timeout'?",
        "poller.yaml:5: poll.interval: 'soon' is not a duration; use e.g. 30, '500ms', '30s', '5m'",
        "poller.yaml:6: poll.intervall: unknown key 'intervall'; did you mean 'interval'?",
        "poller.yaml:10: sinks[0].concurrency: -1 is too small; use 1 or more",
        "poller.yaml:12: ops.listen: environment variable LISTEN is not set; "
        "export it or write the value in the file",
    ]
    assert [p.line for p in error(text).problems] == [2, 3, 5, 6, 10, 12]


def test_an_unset_variable_is_its_only_problem() -> None:
    """A value left unexpanded is not also reported as malformed (it is not a duration)."""
    assert lines("poll:\n  interval: ${POLL_INTERVAL}\n") == [
        "poller.yaml:2: poll.interval: environment variable POLL_INTERVAL is not set; "
        "export it or write the value in the file"
    ]


def test_checks_across_sections_are_all_reported() -> None:
    """Duplicate names and unknown references are reported together."""
    text = (
        "workspaces:\n  - name: prod\n  - name: prod\n"
        "sinks:\n  - name: a\n    type: log\n    workspaces: [staging]\n"
        "  - name: a\n    type: log\n"
        "proxy:\n  token: t0ken\n"
    )
    assert lines(text) == [
        "poller.yaml:3: workspaces[1].name: duplicate workspace name 'prod' (also workspaces[0]); "
        "give each workspace its own name",
        "poller.yaml:7: sinks[0].workspaces[0]: unknown workspace 'staging'; known: prod",
        "poller.yaml:8: sinks[1].name: duplicate sink name 'a' (also sinks[0]); "
        "give each sink its own name",
        "poller.yaml:11: proxy.token: a token is only used with inject_key: true (clients then "
        "send it instead of an API key); remove it or set inject_key: true",
    ]


def test_checks_across_sections_come_with_value_errors() -> None:
    """Duplicate names, unknown references and ha on SQLite are reported in the same run as
    bad values, in file order."""
    text = (
        "workspaces:\n  - name: prod\n    timeout: soon\n  - name: prod\n"
        "poll:\n  intervall: 5s\n"
        "sinks:\n  - name: a\n    type: log\n    workspaces: [staging]\n"
        "  - name: a\n    type: log\n    concurrency: lots\n"
        "ha:\n  lease_ttl: 15s\n"
        "proxy:\n  inject_key: true\n"
    )
    assert lines(text) == [
        "poller.yaml:3: workspaces[0].timeout: 'soon' is not a duration; "
        "use e.g. 30, '500ms', '30s', '5m'",
        "poller.yaml:4: workspaces[1].name: duplicate workspace name 'prod' (also workspaces[0]); "
        "give each workspace its own name",
        "poller.yaml:6: poll.intervall: unknown key 'intervall'; did you mean 'interval'?",
        "poller.yaml:10: sinks[0].workspaces[0]: unknown workspace 'staging'; known: prod",
        "poller.yaml:11: sinks[1].name: duplicate sink name 'a' (also sinks[0]); "
        "give each sink its own name",
        "poller.yaml:13: sinks[1].concurrency: expected a whole number, got a string",
        "poller.yaml:14: ha: HA needs a PostgreSQL store shared by the replicas; set store.url "
        "to postgresql+psycopg://… or remove the ha: section (a SQLite store runs one daemon)",
        "poller.yaml:17: proxy.inject_key: inject_key: true needs a token that local clients "
        "must send; set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
        "poller.yaml:17: proxy.inject_key: workspace 'prod' has no api_key to inject; set its "
        "api_key, or let clients send their own key (inject_key: false)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "sinks:\n  - name: a b\n    type: log\n  - name: a b\n    type: log\n",
            [
                "poller.yaml:2: sinks[0].name: 'a b' is not a valid sink name; "
                "use letters, digits, _, . and -",
                "poller.yaml:4: sinks[1].name: 'a b' is not a valid sink name; "
                "use letters, digits, _, . and -",
            ],
        ),
        (
            "workspaces:\n  - name: Prod\nsinks:\n  - name: a\n    type: log\n"
            "    workspaces: [Prod]\n",
            [
                "poller.yaml:2: workspaces[0].name: 'Prod' is not a valid workspace name; "
                "use lowercase letters, digits, _ and - (up to 63, starting with a letter or "
                "digit)"
            ],
        ),
        (
            "sinks:\n  - name: ${SINK}\n    type: log\n  - name: ${SINK}\n    type: log\n",
            [
                "poller.yaml:2: sinks[0].name: environment variable SINK is not set; "
                "export it or write the value in the file",
                "poller.yaml:4: sinks[1].name: environment variable SINK is not set; "
                "export it or write the value in the file",
            ],
        ),
    ],
    ids=["invalid names", "invalid workspace name", "unset names"],
)
def test_a_key_is_judged_once(text: str, expected: list[str]) -> None:
    """A name whose value is already at fault is not also called a duplicate or unknown."""
    assert lines(text) == expected


def test_every_duplicate_key_is_reported() -> None:
    """Each key given twice gets its line."""
    assert lines(
        "poll:\n  interval: 5s\n  interval: 6s\nlog:\n  level: info\n  level: debug\n"
    ) == [
        "poller.yaml:3: poll.interval: duplicate key 'interval'; give each key once",
        "poller.yaml:6: log.level: duplicate key 'level'; give each key once",
    ]


def checked(text: str, missing: set[str], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        config.parse(
            text,
            source="poller.yaml",
            environ=environ or {},
            directory_exists=lambda d: d not in missing,
        )
    return info.value


def test_store_directory_that_does_not_exist_is_a_problem() -> None:
    """With the filesystem asked, a SQLite store.url in a missing directory is one line."""
    text = "store:\n  url: sqlite:////srv/poller/state/poller.db\npoll:\n  interval: x\n"
    assert str(checked(text, {"/srv/poller/state"})).splitlines() == [
        "poller.yaml:2: store.url: the directory /srv/poller/state does not exist; create it "
        "(install -d -m 0700 /srv/poller/state) or change store.url",
        "poller.yaml:4: poll.interval: 'x' is not a duration; use e.g. 30, '500ms', '30s', '5m'",
    ]


def test_default_store_directory_is_checked_too() -> None:
    """Without store.url, the default store's directory (here systemd's) must exist."""
    exc = checked("log:\n  level: info\n", {"/run/state"}, {"STATE_DIRECTORY": "/run/state"})
    assert str(exc) == (
        "poller.yaml:1: store.url: not set, so the store is /run/state/poller.db, but "
        "/run/state does not exist; create it (install -d -m 0700 /run/state) or set store.url"
    )


@pytest.mark.parametrize(
    "url",
    ["sqlite:////srv/poller/poller.db", "sqlite:///poller.db", "postgresql://u@h/db"],
    ids=["existing directory", "relative to the working directory", "postgresql"],
)
def test_store_directory_that_exists_passes(url: str) -> None:
    """A SQLite store in an existing directory, or a PostgreSQL one, passes the check."""
    loaded = config.parse(
        f"store:\n  url: {url}\n", environ={}, directory_exists=lambda d: d in ("/srv/poller", ".")
    )
    assert loaded.store.url == url


def test_bare_default_store_is_left_to_the_daemon() -> None:
    """Without store.url or $STATE_DIRECTORY, /var/lib/poller is not checked ahead."""
    loaded = config.parse("log:\n  level: info\n", environ={}, directory_exists=lambda d: False)
    assert loaded.store.url == "sqlite:////var/lib/poller/poller.db"


def test_without_the_filesystem_the_directory_is_not_checked() -> None:
    """Parsing alone (reload, tests, tools) never looks at the disk."""
    assert config.parse("store:\n  url: sqlite:////nonexistent/x/poller.db\n", environ={})


def test_a_part_not_read_is_left_out_for_an_unset_variable() -> None:
    """With `reads`, each unset variable outside what is read takes its part out: a sink is
    kept by name, the proxy goes, any other key goes alone; what went is reported once."""
    heard: list[config.partial.Skipped] = []
    text = (
        "workspaces:\n  - name: prod\n    api_key: ${KEY}\n    timeout: 5s\n"
        "sinks:\n  - name: hook\n    type: http\n    url: https://h.example/x\n"
        "    secret: ${SECRET}\n    headers:\n      Authorization: Bearer ${SECRET}\n"
        "ops:\n  listen: ${LISTEN}\n"
        "proxy:\n  token: ${TOKEN}\n  inject_key: true\n"
    )
    loaded = config.parse(
        text,
        source="poller.yaml",
        environ={},
        reads=config.partial.operator(),
        on_skip=heard.append,
    )
    assert [(w.name, w.api_key, w.timeout) for w in loaded.workspaces] == [("prod", None, 5.0)]
    assert [(s.name, s.type) for s in loaded.sinks] == [("hook", "log")]
    assert (loaded.ops.listen, loaded.proxy) == (None, None)
    assert heard == [
        config.partial.Skipped(
            ("KEY", "SECRET", "LISTEN", "TOKEN"),
            ("workspaces[0].api_key", "sink 'hook'", "ops.listen", "proxy"),
        )
    ]


def test_what_is_read_stays_strict() -> None:
    """An unset variable in what the command reads is still an error, and alone reported."""
    text = "store:\n  url: ${STORE}\nmistral:\n  api_key: ${KEY}\n"
    with pytest.raises(ConfigError) as info:
        config.parse(text, source="poller.yaml", environ={}, reads=config.partial.operator())
    assert str(info.value) == (
        "poller.yaml:2: store.url: environment variable STORE is not set; "
        "export it or write the value in the file"
    )
