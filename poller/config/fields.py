"""Field types of the config models, and the value checks behind them.

Each check raises through :func:`fail`, which carries a finished message (and optionally a
key suffix) through pydantic so :func:`poller.config.errors.translate` can turn it into a
:class:`~poller.exceptions.ConfigError` untouched.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
import urllib.parse
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, WithJsonSchema
from pydantic_core import PydanticCustomError

from poller.utils import parse_duration

DEFAULT_BASE_URL = "https://api.mistral.ai/v1"
URL_PLACEHOLDERS = ("resource", "action")
TARGET_PLACEHOLDERS = ("resource", "action", "type", "workspace")
STORE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg")
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "connection",
        "transfer-encoding",
    }
)


# --------------------------------------------------------------------------- value checks


def fail(message: str, *suffix: str | int, at: str = "value") -> PydanticCustomError:
    """A pydantic error carrying the finished ``message``; ``suffix`` extends its key path
    and ``at`` ("key", "value" or "parent") says which line it points at."""
    return PydanticCustomError(
        "poller", "{message}", {"message": message, "suffix": suffix, "at": at}
    )


MAX_DURATION = 3650 * 86400.0
"""Ten years: longer durations overflow the clock arithmetic they feed."""


def _duration(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    if not math.isfinite(seconds):
        raise fail(f"{value!r} is not a finite duration; use e.g. 30, '500ms', '30s', '5m'")
    if seconds > MAX_DURATION:
        raise fail(f"{value!r} is too long; durations go up to 3650d (ten years)")
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds == 0:
        raise fail(f"{value!r} is not allowed here; the duration must be more than zero")
    return seconds


MIN_LEASE_TTL = 1.0
"""Seconds: a lease is renewed every third of its TTL, through the database."""


def _lease_ttl(value: Any) -> float:
    seconds = _duration(value)
    if seconds < MIN_LEASE_TTL:
        raise fail(f"{value!r} is too short; a lease TTL is at least 1s (e.g. '15s')")
    return seconds


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}
_SIZE_UNITS.update({"KB": 1000, "MB": 1000**2, "GB": 1000**3})


def _size(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)):
        size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    else:
        raise fail(f"{value!r} is not a size; use bytes or e.g. '512KiB', '20MiB', '1GB'")
    if size <= 0:
        raise fail(f"{value!r} is not allowed here; the size must be more than zero")
    return size


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise fail("expected a number, got true/false")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def _http_url(value: str, example: str) -> str:
    if any(c.isspace() for c in value):
        raise fail(f"the URL contains whitespace; use e.g. {example}")
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 host
        raise fail(f"the URL cannot be parsed; use e.g. {example}") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"scheme '{parts.scheme}'" if parts.scheme else "no scheme"
        raise fail(f"the URL has {scheme}; use an http:// or https:// URL, e.g. {example}")
    if not parts.hostname:
        raise fail(f"the URL has no host; use e.g. {example}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise fail(f"the URL has an invalid port; use e.g. {example}") from None
    return value


def _base_url(value: str) -> str:
    _http_url(value, DEFAULT_BASE_URL)
    # httpx turns URL credentials into Basic auth, which replaces the API key's header
    # (and the proxy's transport refuses the pair outright)
    parts = urllib.parse.urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise fail(
            "the URL carries a user name or password, which would be sent instead of the API "
            "key; remove it and set api_key (and auth_header, auth_scheme) instead"
        )
    return value.rstrip("/")


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _sink_url(value: str) -> str:
    example = "https://hooks.example.com/mistral"
    for name in _PLACEHOLDER.findall(value):
        if name not in URL_PLACEHOLDERS:
            raise fail(
                f"unknown placeholder {{{name}}} in the URL; only {{resource}} and {{action}} "
                "may appear"
            )
    bare = _PLACEHOLDER.sub("x", value)
    if "{" in bare or "}" in bare:
        raise fail("the URL has an unmatched { or }; placeholders look like {resource}")
    _http_url(bare, example)
    return value


def _broker_url(schemes: tuple[str, ...], example: str) -> AfterValidator:
    """A check that a URL has one of ``schemes`` and a host; credentials are allowed."""

    def check(value: str) -> str:
        if any(c.isspace() for c in value):
            raise fail(f"the URL contains whitespace; use e.g. {example}")
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise fail(f"the URL cannot be parsed; use e.g. {example}") from None
        if parts.scheme.lower() not in schemes:
            scheme = f"scheme '{parts.scheme}'" if parts.scheme else "no scheme"
            allowed = " or ".join(f"{s}://" for s in schemes)
            raise fail(f"the URL has {scheme}; use a {allowed} URL, e.g. {example}")
        if not parts.hostname:
            raise fail(f"the URL has no host; use e.g. {example}")
        return value

    return AfterValidator(check)


def _redis_database(value: str) -> str:
    """A ``redis://`` URL's path, when it has one, is the database number (else db 0 is used)."""
    path = urllib.parse.urlsplit(value).path.strip("/")
    if path and not path.isdigit():
        raise fail(
            f"'/{path}' is not a database number; use e.g. redis://127.0.0.1:6379/0 "
            "(or no path, for database 0)"
        )
    return value


def _target(forbidden: str, example: str) -> AfterValidator:
    """A check of a subject, routing key or topic template: known placeholders only,
    none of the characters in ``forbidden`` (wildcards, separators) and no whitespace."""

    def check(value: str) -> str:
        for name in _PLACEHOLDER.findall(value):
            if name not in TARGET_PLACEHOLDERS:
                known = ", ".join(f"{{{p}}}" for p in TARGET_PLACEHOLDERS)
                raise fail(f"unknown placeholder {{{name}}}; use {known}")
        bare = _PLACEHOLDER.sub("x", value)
        if "{" in bare or "}" in bare:
            raise fail("unmatched { or }; placeholders look like {resource}")
        bad = sorted({c for c in bare if c in forbidden or c.isspace()})
        if bad:
            shown = " ".join(repr(c) for c in bad)
            raise fail(f"{shown} cannot appear here; use e.g. {example}")
        return value

    return AfterValidator(check)


def _stream_key(value: str) -> str:
    if "{" in value or "}" in value or any(c.isspace() for c in value):
        raise fail("a stream is one key without placeholders or whitespace, e.g. poller:events")
    return value


def _qos(value: Any) -> Any:
    if value not in (0, 1, 2) or isinstance(value, bool):
        raise fail("qos is 0 (at most once), 1 (at least once, the default) or 2 (exactly once)")
    return value


def _webhook_secret(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    hint = "not a Standard Webhooks secret (expected whsec_ followed by base64)"
    if not text.startswith("whsec_"):
        raise fail(hint)
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise fail(hint) from None
    if not 24 <= len(key) <= 64:
        raise fail(
            f"the secret decodes to {len(key)} bytes; use 24 to 64 random bytes, "
            "e.g. whsec_$(openssl rand -base64 32)"
        )
    return value


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise fail(f"{value!r} is not a valid HTTP header name")
    return value


def _headers(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise fail(f"{name!r} is not a valid HTTP header name", name, at="key")
        if name.lower() in RESERVED_HEADERS:
            raise fail(f"'{name}' is set by poller itself; remove it from headers", name, at="key")
        if isinstance(text, str) and ("\r" in text or "\n" in text):
            raise fail("header values must be one line", name)
    return value


def _no_newline(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise fail("must be one line")
    return value


def mask_url(url: str) -> str:
    """``url`` with any password (in the userinfo or a ``password=`` query) shown as ``***``."""
    url = re.sub(r"(://[^/@:]*:).*@", r"\1***@", url)  # greedy: a password may hold '@'

    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def _store_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES:
        raise fail(
            f"unsupported store URL '{mask_url(value)}'; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if rest in ("", "/") or ":memory:" in rest:
        raise fail(
            "an in-memory SQLite database is lost when poller stops; "
            "use sqlite:///PATH to a file, e.g. sqlite:////var/lib/poller/poller.db"
        )
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` listen address (``[::1]:9464`` gives ``::1``).

    Raises ``ValueError`` with a message that shows the accepted forms.
    """
    hint = f"{value!r} is not HOST:PORT; use e.g. 127.0.0.1:9464, [::1]:9464 or localhost:9464"
    if value.startswith("["):
        host, sep, port = value[1:].partition("]:")
        try:
            ok = bool(sep) and ipaddress.ip_address(host).version == 6
        except ValueError:
            ok = False
    else:
        host, sep, port = value.rpartition(":")
        ok = bool(sep) and ":" not in host and _HOSTNAME.match(host) is not None
    if not ok or not port.isdigit():
        raise ValueError(hint)
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port} is out of range; use 1 to 65535")
    return host, int(port)


def _host_name(value: str) -> str:
    if _HOSTNAME.match(value) is None:
        raise fail(f"{value!r} is not a host name; use a name such as poller or poller.internal")
    return value.lower().rstrip(".")


def _listen(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise fail(str(exc)) from None
    return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` is ``localhost`` or a loopback IP address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- field types


def _number_or_string(kind: str, minimum: dict[str, int], pattern: str) -> WithJsonSchema:
    # The schema describes the file before ${VAR} expansion, so a reference is a string too.
    number = {"type": kind, **minimum}
    return WithJsonSchema({"anyOf": [number, {"type": "string", "pattern": pattern}]})


_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)?\s*$|\$\{"
_SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$|\$\{"
_SECRET_SCHEMA: dict[str, Any] = {"type": "string", "writeOnly": True}

Duration = Annotated[
    float,
    BeforeValidator(_duration),
    _number_or_string("number", {"minimum": 0}, _DURATION_PATTERN),
]
PositiveDuration = Annotated[
    float,
    BeforeValidator(_positive_duration),
    _number_or_string("number", {"exclusiveMinimum": 0}, _DURATION_PATTERN),
]
LeaseTtl = Annotated[
    float,
    BeforeValidator(_lease_ttl),
    _number_or_string("number", {"minimum": MIN_LEASE_TTL}, _DURATION_PATTERN),
]
Size = Annotated[
    int,
    BeforeValidator(_size),
    _number_or_string("integer", {"exclusiveMinimum": 0}, _SIZE_PATTERN),
]
Threshold = Annotated[float, Field(gt=0, le=1), BeforeValidator(_no_bool)]
PageSize = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_no_bool)]
Concurrency = Annotated[int, Field(ge=1, le=256), BeforeValidator(_no_bool)]
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_no_bool)]
WORKSPACE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SINK_NAME = r"^[A-Za-z0-9_.-]+$"
WorkspaceName = Annotated[str, Field(pattern=WORKSPACE_NAME)]
SinkName = Annotated[str, Field(pattern=SINK_NAME)]
Listen = Annotated[str, AfterValidator(_listen)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]
SinkUrl = Annotated[str, AfterValidator(_sink_url)]
StoreUrl = Annotated[str, AfterValidator(_store_url)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
HostName = Annotated[str, AfterValidator(_host_name)]
OneLine = Annotated[str, AfterValidator(_no_newline)]
Headers = Annotated[dict[str, str], BeforeValidator(_headers)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]
NatsUrl = Annotated[str, _broker_url(("nats", "tls"), "nats://127.0.0.1:4222")]
AmqpUrl = Annotated[str, _broker_url(("amqp", "amqps"), "amqp://guest:guest@127.0.0.1:5672/")]
RedisUrl = Annotated[
    str,
    _broker_url(("redis", "rediss"), "redis://127.0.0.1:6379/0"),
    AfterValidator(_redis_database),
]
MqttUrl = Annotated[str, _broker_url(("mqtt", "mqtts"), "mqtt://127.0.0.1:1883")]
NatsSubject = Annotated[
    str, Field(min_length=1), _target("*>", "poller.{workspace}.{resource}.{action}")
]
RoutingKey = Annotated[str, Field(max_length=255), _target("", "{workspace}.{type}")]
StreamKey = Annotated[str, Field(min_length=1), AfterValidator(_stream_key)]
MqttTopic = Annotated[str, Field(min_length=1), _target("+#", "poller/{workspace}/{type}")]
Qos = Annotated[Literal[0, 1, 2], BeforeValidator(_qos)]
WebhookSecrets = Annotated[
    tuple[Annotated[SecretStr, AfterValidator(_webhook_secret)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1, validation_alias="secret"),
    WithJsonSchema(
        {"anyOf": [_SECRET_SCHEMA, {"type": "array", "items": _SECRET_SCHEMA, "minItems": 1}]}
    ),
]
