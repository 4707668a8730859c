"""Typed configuration: YAML with line numbers, ``${VAR}`` expansion, one-line errors.

The file as written (see ``docs/configuration.md``) is validated by :class:`ConfigFile` and
its ``*Section`` models; :func:`parse` then normalises it into :class:`Config`, whose values
are effective: every workspace carries its merged ``poll`` and ``sources``, defaults are
filled in, and nothing is left for callers to merge. Every problem becomes one
:class:`~poller.exceptions.ConfigError` line ``<file>:<line>: <key>: <what to change>``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import fnmatch
import ipaddress
import math
import os
import pathlib
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from poller.exceptions import ConfigError
from poller.utils import parse_duration

DEFAULT_CONFIG_PATH = "/etc/poller/poller.yaml"
DEFAULT_BASE_URL = "https://api.mistral.ai/v1"
DEFAULT_STORE_URL = "sqlite:////var/lib/poller/poller.db"
EXAMPLE_PATH = "config/poller.example.yaml"
SOURCE_NAMES = ("batch_jobs", "fine_tuning_jobs", "files", "models")
SINK_TYPES = ("file", "http", "log")
URL_PLACEHOLDERS = ("resource", "action")
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

Path = tuple[str | int, ...]

# --------------------------------------------------------------------------- value checks
# Each raises through _fail(), which carries a finished message (and optionally a key
# suffix) through pydantic so _translate() can turn it into a ConfigError untouched.


def _fail(message: str, *suffix: str | int, at: str = "value") -> PydanticCustomError:
    return PydanticCustomError(
        "poller", "{message}", {"message": message, "suffix": suffix, "at": at}
    )


def _kind(value: Any) -> str:
    """How a value looks, without showing it (it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _duration(value: Any) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if not math.isfinite(seconds):
        raise _fail(f"{value!r} is not a finite duration; use e.g. 30, '500ms', '30s', '5m'")
    return seconds


def _positive_duration(value: Any) -> float:
    seconds = _duration(value)
    if seconds == 0:
        raise _fail(f"{value!r} is not allowed here; the duration must be more than zero")
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
        raise _fail(f"{value!r} is not a size; use bytes or e.g. '512KiB', '20MiB', '1GB'")
    if size <= 0:
        raise _fail(f"{value!r} is not allowed here; the size must be more than zero")
    return size


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise _fail("expected a number, got true/false")
    return value


def _blank_is_none(value: Any) -> Any:
    return None if value == "" else value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _source_shorthand(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"enabled": value}
    return value


_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$")


def _http_url(value: str, example: str) -> str:
    if any(c.isspace() for c in value):
        raise _fail(f"the URL contains whitespace; use e.g. {example}")
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:  # e.g. an unclosed [ of an IPv6 host
        raise _fail(f"the URL cannot be parsed; use e.g. {example}") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = f"scheme '{parts.scheme}'" if parts.scheme else "no scheme"
        raise _fail(f"the URL has {scheme}; use an http:// or https:// URL, e.g. {example}")
    if not parts.hostname:
        raise _fail(f"the URL has no host; use e.g. {example}")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _fail(f"the URL has an invalid port; use e.g. {example}") from None
    return value


def _base_url(value: str) -> str:
    return _http_url(value, DEFAULT_BASE_URL).rstrip("/")


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _sink_url(value: str) -> str:
    example = "https://hooks.example.com/mistral"
    for name in _PLACEHOLDER.findall(value):
        if name not in URL_PLACEHOLDERS:
            raise _fail(
                f"unknown placeholder {{{name}}} in the URL; only {{resource}} and {{action}} "
                "may appear"
            )
    bare = _PLACEHOLDER.sub("x", value)
    if "{" in bare or "}" in bare:
        raise _fail("the URL has an unmatched { or }; placeholders look like {resource}")
    _http_url(bare, example)
    return value


def _webhook_secret(value: SecretStr) -> SecretStr:
    text = value.get_secret_value()
    hint = "not a Standard Webhooks secret (expected whsec_ followed by base64)"
    if not text.startswith("whsec_"):
        raise _fail(hint)
    try:
        key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise _fail(hint) from None
    if not 24 <= len(key) <= 64:
        raise _fail(
            f"the secret decodes to {len(key)} bytes; use 24 to 64 random bytes, "
            "e.g. whsec_$(openssl rand -base64 32)"
        )
    return value


def _header_name(value: str) -> str:
    if not _TOKEN.match(value):
        raise _fail(f"{value!r} is not a valid HTTP header name")
    return value


def _headers(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return value
    for name, text in value.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise _fail(f"{name!r} is not a valid HTTP header name", name, at="key")
        if name.lower() in RESERVED_HEADERS:
            raise _fail(f"'{name}' is set by poller itself; remove it from headers", name, at="key")
        if isinstance(text, str) and ("\r" in text or "\n" in text):
            raise _fail("header values must be one line", name)
    return value


def _no_newline(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise _fail("must be one line")
    return value


def mask_url(url: str) -> str:
    """``url`` with any password (in the userinfo or a ``password=`` query) shown as ``***``."""
    url = re.sub(r"(://[^/@:]*:).*@", r"\1***@", url)  # greedy: a password may hold '@'

    return re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)


def _store_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in STORE_SCHEMES:
        raise _fail(
            f"unsupported store URL '{mask_url(value)}'; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    if rest in ("", "/") or ":memory:" in rest:
        raise _fail(
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


def _listen(value: str) -> str:
    try:
        split_listen(value)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    return value


def _is_loopback(host: str) -> bool:
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
Size = Annotated[
    int,
    BeforeValidator(_size),
    _number_or_string("integer", {"exclusiveMinimum": 0}, _SIZE_PATTERN),
]
Threshold = Annotated[float, Field(gt=0, le=1), BeforeValidator(_no_bool)]
PageSize = Annotated[int, Field(ge=1, le=1000), BeforeValidator(_no_bool)]
Concurrency = Annotated[int, Field(ge=1, le=256), BeforeValidator(_no_bool)]
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_no_bool)]
_WORKSPACE_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"
_SINK_NAME = r"^[A-Za-z0-9_.-]+$"
WorkspaceName = Annotated[str, Field(pattern=_WORKSPACE_NAME)]
SinkName = Annotated[str, Field(pattern=_SINK_NAME)]
Listen = Annotated[str, AfterValidator(_listen)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]
SinkUrl = Annotated[str, AfterValidator(_sink_url)]
StoreUrl = Annotated[str, AfterValidator(_store_url)]
HeaderName = Annotated[str, AfterValidator(_header_name)]
OneLine = Annotated[str, AfterValidator(_no_newline)]
Headers = Annotated[dict[str, str], BeforeValidator(_headers)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]
WebhookSecrets = Annotated[
    tuple[Annotated[SecretStr, AfterValidator(_webhook_secret)], ...],
    BeforeValidator(_one_or_many),
    Field(min_length=1, validation_alias="secret"),
    WithJsonSchema(
        {"anyOf": [_SECRET_SCHEMA, {"type": "array", "items": _SECRET_SCHEMA, "minItems": 1}]}
    ),
]


def _also_boolean(schema: dict[str, Any]) -> None:
    schema.setdefault("anyOf", []).append({"type": "boolean"})


# --------------------------------------------------------------------------- models


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in model.model_fields.items()
    ]


def _unknown_key(key: object, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key '{key}'; did you mean '{close[0]}'?"
    return f"unknown key '{key}'; valid keys: {', '.join(allowed)}"


_FILE = {"file": True}  # validation context: the data is the file as written


class _Section(BaseModel):
    """Base of every config model: frozen, and unknown keys are refused with a suggestion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, Mapping):
            allowed = _keys_of(cls)
            # Python callers may also use attribute names (HttpSinkConfig(secrets=...)).
            spelled = allowed if info.context == _FILE else [*allowed, *cls.model_fields]
            for key in data:
                if key not in spelled:
                    raise _fail(_unknown_key(key, allowed), str(key), at="key")
        return data


class PollConfig(_Section):
    """How often and how carefully each source is polled."""

    interval: PositiveDuration = 30.0
    active_interval: PositiveDuration = 5.0
    emit_existing: bool = False
    timeout: PositiveDuration = 120.0
    reconcile_interval: PositiveDuration = 600.0
    max_backoff: PositiveDuration = 300.0
    mass_delete_threshold: Threshold = 0.5


class PollOverrides(_Section):
    """A workspace's ``poll:`` block: only the keys given override the top-level ``poll``."""

    interval: PositiveDuration | None = None
    active_interval: PositiveDuration | None = None
    emit_existing: bool | None = None
    timeout: PositiveDuration | None = None
    reconcile_interval: PositiveDuration | None = None
    max_backoff: PositiveDuration | None = None
    mass_delete_threshold: Threshold | None = None


class SourceConfig(_Section):
    """Effective settings of one source in one workspace."""

    enabled: bool = True
    interval: PositiveDuration = 30.0
    active_interval: PositiveDuration = 5.0


class SourceSection(_Section):
    """One entry of a ``sources:`` block as written; absent keys are inherited."""

    enabled: bool | None = None
    interval: PositiveDuration | None = None
    active_interval: PositiveDuration | None = None


SourceEntry = Annotated[
    SourceSection | None,
    BeforeValidator(_source_shorthand),
    Field(json_schema_extra=_also_boolean),
]


class SourcesSection(_Section):
    """A ``sources:`` block as written: ``false`` disables a source, absent keys are inherited."""

    batch_jobs: SourceEntry = None
    fine_tuning_jobs: SourceEntry = None
    files: SourceEntry = None
    models: SourceEntry = None


class SourcesConfig(_Section):
    """Effective settings of the four sources of one workspace."""

    batch_jobs: SourceConfig = Field(default_factory=SourceConfig)
    fine_tuning_jobs: SourceConfig = Field(default_factory=SourceConfig)
    files: SourceConfig = Field(default_factory=SourceConfig)
    models: SourceConfig = Field(default_factory=SourceConfig)

    def get(self, name: str) -> SourceConfig:
        """The settings of source ``name`` (one of ``SOURCE_NAMES``); ``KeyError`` otherwise."""
        return {
            "batch_jobs": self.batch_jobs,
            "fine_tuning_jobs": self.fine_tuning_jobs,
            "files": self.files,
            "models": self.models,
        }[name]

    def enabled(self) -> tuple[str, ...]:
        """Names of the enabled sources, in ``SOURCE_NAMES`` order."""
        return tuple(name for name in SOURCE_NAMES if self.get(name).enabled)


class _WorkspaceFields(_Section):
    base_url: BaseUrl = DEFAULT_BASE_URL
    api_key: OptionalSecret = None
    auth_header: HeaderName = "Authorization"
    auth_scheme: OneLine = "Bearer"
    timeout: PositiveDuration = 30.0
    page_size: PageSize = 100
    max_requests_per_minute: PositiveInt | None = None


class MistralSection(_WorkspaceFields):
    """The ``mistral:`` block (one workspace) as written."""

    name: WorkspaceName = "default"
    poll: PollOverrides | None = None
    sources: SourcesSection | None = None


class WorkspaceEntry(MistralSection):
    """One entry of the ``workspaces:`` list as written; ``name`` is required there."""

    name: WorkspaceName


class Workspace(_WorkspaceFields):
    """One Mistral workspace with its effective ``poll`` and ``sources``."""

    name: WorkspaceName = "default"
    poll: PollConfig = Field(default_factory=PollConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)


class StoreSection(_Section):
    """The ``store:`` block as written."""

    url: StoreUrl | None = None


class StoreConfig(_Section):
    """Where poller keeps its snapshots and outbox (a SQLAlchemy URL)."""

    url: StoreUrl = DEFAULT_STORE_URL

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        yield "url", mask_url(self.url)


class RetryConfig(_Section):
    """When a sink's deliveries are retried and when they are given up."""

    schedule: Annotated[tuple[Duration, ...], Field(min_length=1)] = (
        0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
    )  # fmt: skip
    max_age: PositiveDuration = 3 * 86400.0
    probe_interval: PositiveDuration = 30.0


def _type_required(schema: dict[str, Any]) -> None:
    # `type` has a default for Python callers, but the file must always say it.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class _SinkBase(_Section):
    model_config = ConfigDict(json_schema_extra=_type_required)

    name: SinkName
    events: Annotated[tuple[str, ...], Field(min_length=1)] = ("*",)
    workspaces: Annotated[tuple[str, ...], Field(min_length=1)] | None = None
    concurrency: Concurrency = 8
    retry: RetryConfig = Field(default_factory=RetryConfig)

    def matches(self, event_type: str, workspace: str) -> bool:
        """Whether this sink wants events of ``event_type`` from ``workspace``."""
        if self.workspaces is not None and workspace not in self.workspaces:
            return False
        return any(fnmatch.fnmatchcase(event_type, glob) for glob in self.events)


class HttpSinkConfig(_SinkBase):
    """Signed webhooks (Standard Webhooks or CloudEvents) POSTed to ``url``.

    The file's ``secret:`` (one string or a list) becomes ``secrets``, always a tuple.
    """

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["http"] = "http"
    url: SinkUrl
    secrets: WebhookSecrets = ()
    format: Literal["standard", "cloudevents"] = "standard"
    headers: Headers = Field(default_factory=dict)
    timeout: PositiveDuration = 15.0

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        # Static headers may carry a receiver's credentials.
        for name, value in super().__repr_args__():
            if name == "headers":
                value = {header: "***" for header in self.headers}
            yield name, value


class LogSinkConfig(_SinkBase):
    """Events written to poller's own log."""

    type: Literal["log"] = "log"


class FileSinkConfig(_SinkBase):
    """Events appended as JSON Lines to ``path``."""

    type: Literal["file"] = "file"
    path: Annotated[str, Field(min_length=1)]


SinkConfig = Annotated[HttpSinkConfig | LogSinkConfig | FileSinkConfig, Field(discriminator="type")]


class OpsConfig(_Section):
    """The health and metrics listener; ``listen`` None means off."""

    listen: Listen | None = None


class LogConfig(_Section):
    """poller's own logging."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class ShutdownConfig(_Section):
    """What happens on SIGTERM."""

    grace_period: Duration = 10.0


class _ProxyFields(_Section):
    enabled: bool = True
    listen: Listen = "127.0.0.1:8787"
    inject_key: bool = False
    token: OptionalSecret = None
    record_content: bool = True
    max_body: Size = 20 * 1024**2
    max_body_ocr: Size = 100 * 1024**2
    read_timeout: PositiveDuration = 600.0


class ProxySection(_ProxyFields):
    """The ``proxy:`` block as written; ``workspace`` defaults to the first workspace."""

    workspace: WorkspaceName | None = None


class ProxyConfig(_ProxyFields):
    """The recording proxy; ``workspace`` names the upstream workspace."""

    workspace: WorkspaceName = "default"


class ConfigFile(_Section):
    """The YAML file as written, before defaults are filled in and overrides merged."""

    model_config = ConfigDict(title="poller configuration")

    mistral: MistralSection | None = None
    workspaces: Annotated[tuple[WorkspaceEntry, ...], Field(min_length=1)] | None = None
    store: StoreSection | None = None
    poll: PollConfig | None = None
    sources: SourcesSection | None = None
    sinks: Annotated[tuple[SinkConfig, ...], Field(min_length=1)] | None = None
    ops: OpsConfig | None = None
    log: LogConfig | None = None
    shutdown: ShutdownConfig | None = None
    proxy: ProxySection | None = None


def _default_sinks() -> tuple[SinkConfig, ...]:
    return (LogSinkConfig(name="log"),)


class Config(_Section):
    """The whole, effective configuration of one poller process."""

    workspaces: Annotated[tuple[Workspace, ...], Field(min_length=1)] = (Workspace(),)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sinks: tuple[SinkConfig, ...] = Field(default_factory=_default_sinks)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    proxy: ProxyConfig | None = None
    source: str = "<config>"

    def workspace(self, name: str) -> Workspace:
        """The workspace called ``name``; ``KeyError`` when there is none."""
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        raise KeyError(name)


# --------------------------------------------------------------------------- loading


def resolve_path(cli_value: str | None, environ: Mapping[str, str] | None = None) -> pathlib.Path:
    """The config file to read: ``--config``, else ``$POLLER_CONFIG``, else the default."""
    env = os.environ if environ is None else environ
    return pathlib.Path(cli_value or env.get("POLLER_CONFIG") or DEFAULT_CONFIG_PATH)


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``."""
    source = os.fspath(path)
    try:
        text = pathlib.Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"cannot read the config file: {reason}; pass --config PATH or set POLLER_CONFIG",
            path=source,
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"cannot read the config file: it is not UTF-8 text (byte {exc.start})", path=source
        ) from None
    return parse(text, source=source, environ=environ)


def parse(
    text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None
) -> Config:
    """Validate YAML ``text``; ``source`` names it in errors."""
    env = os.environ if environ is None else environ
    where = _Where(source)
    return _build(_read_yaml(text, where, env), where, env)


def from_mapping(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    """Validate an already-parsed, already-expanded mapping shaped like the file."""
    return _build(data, _Where(source), os.environ)


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the YAML file, as written before ``${VAR}`` expansion."""
    schema = ConfigFile.model_json_schema(mode="validation")
    schema["not"] = {"required": ["mistral", "workspaces"]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Where:
    """Where the parts of one document are: key path -> 1-based line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: dict[Path, int] = {}
        self.values: dict[Path, int] = {}

    def line(self, path: Path, at: str = "value") -> int | None:
        if at == "key" and path in self.keys:
            return self.keys[path]
        if at == "parent":
            path = path[:-1]
        while path not in self.values:
            if not path:
                return None
            path = path[:-1]
        return self.values[path]

    def error(self, path: Path, message: str, at: str = "value") -> ConfigError:
        return ConfigError(
            message, key=_dotted(path) or None, path=self.source, line=self.line(path, at)
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _read_yaml(text: str, where: _Where, environ: Mapping[str, str]) -> Any:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None or root.tag == "tag:yaml.org,2002:null":
            raise ConfigError(f"the file is empty; see {EXAMPLE_PATH}", path=where.source)
        return _Reader(where, environ).convert(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ", ".join(_one_line(part) for part in (exc.context, exc.problem) if part)
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        if "${" in line:
            what += "; quote values that hold ${...} inside [...] or {...}"
        raise ConfigError(
            f"invalid YAML: {what}", path=where.source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {_one_line(str(exc))}", path=where.source) from None


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Reader:
    """Turns a composed YAML node tree into plain data, noting lines and expanding ``${VAR}``."""

    def __init__(self, where: _Where, environ: Mapping[str, str]) -> None:
        self.where = where
        self.environ = environ
        self.loader = yaml.SafeLoader("")
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.where.values.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node)
            return self._expand(value, path) if isinstance(value, str) else value
        if id(node) in self.active:
            raise self.where.error(path, "this alias refers to itself; anchors must not recurse")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _key(self, node: yaml.Node, path: Path) -> str:
        key = self.loader.construct_object(node)
        if not isinstance(key, str):
            raise ConfigError(
                f"the key {key!r} is not a string; quote it",
                key=_dotted(path) or None,
                path=self.where.source,
                line=node.start_mark.line + 1,
            )
        return key

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in seen:
                self.where.keys[(*path, key)] = key_node.start_mark.line + 1
                raise self.where.error(
                    (*path, key), f"duplicate key '{key}'; give each key once", at="key"
                )
            seen.add(key)
        # Merged keys (<<: *anchor) come first so the mapping's own keys override them.
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            self.where.keys[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _expand(self, text: str, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            body = match.group(1)
            if body is None:
                raise self.where.error(
                    path, "unterminated ${; close it with } or write $${ for a literal ${"
                )
            ref = _REFERENCE.match(body)
            if ref is None:
                raise self.where.error(
                    path,
                    f"'${{{body}}}' is not a valid reference; use ${{NAME}} or ${{NAME:-default}}",
                )
            name, default = ref.group(1), ref.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    raise self.where.error(
                        path,
                        f"environment variable {name} is not set; "
                        "export it or write the value in the file",
                    )
                return default
            return value

        return _INTERPOLATION.sub(replace, text) if "${" in text else text


_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)

# --------------------------------------------------------------------------- errors

_MISSING = {
    "url": "missing; an http sink needs the URL that receives the webhooks, "
    "e.g. url: https://hooks.example.com/mistral",
    "path": "missing; a file sink needs the file to append events to, "
    "e.g. path: /var/log/poller/events.jsonl",
    "name": "missing; every entry here needs a name",
}
_PATTERN_HINTS = {
    _WORKSPACE_NAME: "is not a valid workspace name; use lowercase letters, digits, _ and - "
    "(up to 63, starting with a letter or digit)",
    _SINK_NAME: "is not a valid sink name; use letters, digits, _, . and -",
}
_EXPECTED = {
    "a mapping": ("model_type", "model_attributes_type", "dict_type", "mapping_type"),
    "a list": ("list_type", "tuple_type", "iterable_type", "sequence_type", "set_type"),
    "true or false": ("bool_type", "bool_parsing"),
    "a whole number": ("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
    "a number": ("float_type", "float_parsing", "finite_number"),
    "a string": ("string_type", "string_unicode", "string_sub_type"),
}
_SINK_TYPES = ", ".join(SINK_TYPES)


def _describe(error: Mapping[str, Any], data: Any) -> tuple[Path, str, str]:
    """(key path, where on the line map, message) of one pydantic error."""
    kind: str = error["type"]
    path = _data_path(error["loc"], data, missing=kind == "missing")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "poller":
        return (*path, *ctx["suffix"]), ctx["at"], ctx["message"]
    if kind == "missing":
        return path, "parent", _MISSING.get(str(path[-1]), "missing; this key is required")
    if kind == "union_tag_invalid":
        message = f"unknown sink type '{ctx.get('tag')}'; use one of: {_SINK_TYPES}"
        return (*path, "type"), "value", message
    if kind == "union_tag_not_found":
        return (*path, "type"), "parent", f"missing; use one of: {_SINK_TYPES}"
    for expected, kinds in _EXPECTED.items():
        if kind in kinds:
            return path, "value", f"expected {expected}, got {_kind(value)}"
    return path, "value", _constraint(kind, ctx, value)


def _constraint(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    if kind == "literal_error":
        options = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        shown = f"'{value}'" if isinstance(value, str) else _kind(value)
        return f"unknown value {shown}; use one of: {options}"
    if kind == "string_pattern_mismatch":
        return f"'{value}' {_PATTERN_HINTS.get(ctx.get('pattern', ''), 'is not allowed here')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "greater_than_equal":
        return f"{value!r} is too small; use {ctx['ge']:g} or more"
    if kind == "greater_than":
        return f"{value!r} is too small; it must be more than {ctx['gt']:g}"
    if kind == "less_than_equal":
        return f"{value!r} is too large; use {ctx['le']:g} or less"
    if kind in ("value_error", "assertion_error"):
        return _one_line(str(ctx.get("error", "invalid value")))
    return f"invalid value ({_kind(value)})"


def _data_path(loc: Iterable[str | int], data: Any, *, missing: bool = False) -> Path:
    """Map a pydantic ``loc`` onto the data, dropping union tags and synthetic indexes."""
    parts = list(loc)
    path: list[str | int] = []
    node = data
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif missing and i == len(parts) - 1 and isinstance(node, Mapping):
            pass  # a missing key
        else:
            continue
        path.append(part)
    return tuple(path)


def _is_echo(error: Mapping[str, Any]) -> bool:
    """A list too short only because some of its items failed: the items' errors say more."""
    value = error.get("input")
    minimum = (error.get("ctx") or {}).get("min_length", 0)
    return (
        error["type"] == "too_short" and isinstance(value, list | tuple) and len(value) >= minimum
    )


def _translate(exc: ValidationError, data: Any, where: _Where) -> ConfigError:
    """The first problem in file order, as one ConfigError line."""
    best: tuple[float, int, Path, str, str] | None = None
    for index, error in enumerate(exc.errors(include_url=False)):
        path, at, message = _describe(error, data)
        line = where.line(path, at)
        if _is_echo(error):
            line = None
        rank = (math.inf if line is None else line, index, path, at, message)
        if best is None or rank[:2] < best[:2]:
            best = rank
    assert best is not None
    _, _, path, at, message = best
    return where.error(path, message, at)


# --------------------------------------------------------------------------- normalising


def _build(data: Any, where: _Where, environ: Mapping[str, str]) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(
            "the file must be a mapping of sections (mistral, store, poll, sinks, ...), "
            f"not {_kind(data)}; see {EXAMPLE_PATH}",
            path=where.source,
            line=where.line(()),
        )
    try:
        raw = ConfigFile.model_validate(data, context=_FILE)
    except ValidationError as exc:
        raise _translate(exc, data, where) from None
    workspaces = _workspaces(raw, where)
    names = [workspace.name for workspace in workspaces]
    return Config(
        workspaces=workspaces,
        store=StoreConfig(url=_store_default(raw.store, environ)),
        sinks=_sinks(raw.sinks, names, where),
        ops=raw.ops or OpsConfig(),
        log=raw.log or LogConfig(),
        shutdown=raw.shutdown or ShutdownConfig(),
        proxy=_proxy(raw.proxy, names, where),
        source=where.source,
    )


def _workspaces(raw: ConfigFile, where: _Where) -> tuple[Workspace, ...]:
    if raw.mistral is not None and raw.workspaces is not None:
        raise where.error(
            ("workspaces",),
            "give either mistral: (one workspace) or workspaces: (a list), not both",
            at="key",
        )
    entries: list[tuple[Path, MistralSection]] = [(("mistral",), raw.mistral or MistralSection())]
    if raw.workspaces is not None:
        entries = [(("workspaces", i), entry) for i, entry in enumerate(raw.workspaces)]
    poll = raw.poll or PollConfig()
    sources = raw.sources or SourcesSection()
    seen: dict[str, Path] = {}
    out = []
    for path, entry in entries:
        if entry.name in seen:
            raise where.error(
                (*path, "name"),
                f"duplicate workspace name '{entry.name}' (also {_dotted(seen[entry.name])}); "
                "give each workspace its own name",
            )
        seen[entry.name] = path
        fields = {name: getattr(entry, name) for name in _WorkspaceFields.model_fields}
        effective = _merge_poll(poll, entry.poll)
        out.append(
            Workspace(
                **fields,
                name=entry.name,
                poll=effective,
                sources=_merge_sources(effective, sources, entry.sources),
            )
        )
    return tuple(out)


def _merge_poll(base: PollConfig, overrides: PollOverrides | None) -> PollConfig:
    if overrides is None:
        return base
    return base.model_copy(update=overrides.model_dump(exclude_none=True))


def _first(*values: Any) -> Any:
    return next(value for value in values if value is not None)


def _merge_sources(
    poll: PollConfig, top: SourcesSection, own: SourcesSection | None
) -> SourcesConfig:
    merged = {}
    for name in SOURCE_NAMES:
        base: SourceSection = getattr(top, name) or SourceSection()
        mine: SourceSection = (getattr(own, name) if own else None) or SourceSection()
        merged[name] = SourceConfig(
            enabled=_first(mine.enabled, base.enabled, True),
            interval=_first(mine.interval, base.interval, poll.interval),
            active_interval=_first(
                mine.active_interval, base.active_interval, poll.active_interval
            ),
        )
    return SourcesConfig(**merged)


def _store_default(raw: StoreSection | None, environ: Mapping[str, str]) -> str:
    if raw is not None and raw.url is not None:
        return raw.url
    # systemd's StateDirectory= may list several directories, separated by ':'.
    state = environ.get("STATE_DIRECTORY", "").split(":")[0].rstrip("/")
    return f"sqlite:///{state}/poller.db" if state else DEFAULT_STORE_URL


def _sinks(
    raw: tuple[SinkConfig, ...] | None, workspaces: list[str], where: _Where
) -> tuple[SinkConfig, ...]:
    if raw is None:
        return _default_sinks()
    seen: dict[str, int] = {}
    for i, sink in enumerate(raw):
        if sink.name in seen:
            raise where.error(
                ("sinks", i, "name"),
                f"duplicate sink name '{sink.name}' (also sinks[{seen[sink.name]}]); "
                "give each sink its own name",
            )
        seen[sink.name] = i
        for j, name in enumerate(sink.workspaces or ()):
            if name not in workspaces:
                raise where.error(
                    ("sinks", i, "workspaces", j),
                    f"unknown workspace '{name}'; known: {', '.join(workspaces)}",
                )
    return raw


def _proxy(raw: ProxySection | None, workspaces: list[str], where: _Where) -> ProxyConfig | None:
    if raw is None:
        return None
    if raw.workspace is not None and raw.workspace not in workspaces:
        raise where.error(
            ("proxy", "workspace"),
            f"unknown workspace '{raw.workspace}'; known: {', '.join(workspaces)}",
        )
    if raw.inject_key and raw.token is None:
        raise where.error(
            ("proxy", "inject_key"),
            "inject_key: true needs a token that local clients must send; "
            "set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
        )
    if raw.inject_key and not _is_loopback(split_listen(raw.listen)[0]):
        raise where.error(
            ("proxy", "listen"),
            f"'{raw.listen}' is not a loopback address; with inject_key: true the proxy must "
            "listen on 127.0.0.1, ::1 or localhost",
        )
    fields = {name: getattr(raw, name) for name in _ProxyFields.model_fields}
    return ProxyConfig(**fields, workspace=raw.workspace or workspaces[0])
