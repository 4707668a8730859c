"""The config models: the file's ``*Section`` models as written, and the effective ``Config``.

:class:`ConfigFile` and its sections validate the YAML file as written (absent keys are
``None``, to be inherited); :class:`Config`, :class:`Workspace` and the other ``*Config``
models hold the effective values that :mod:`poller.config.build` fills in.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)

from poller.config.fields import (
    DEFAULT_BASE_URL,
    AmqpUrl,
    BaseUrl,
    Concurrency,
    Duration,
    HeaderName,
    Headers,
    HostName,
    LeaseTtl,
    Listen,
    MqttTopic,
    MqttUrl,
    NatsSubject,
    NatsUrl,
    OneLine,
    OptionalSecret,
    PageSize,
    PositiveDuration,
    PositiveInt,
    Qos,
    RedisUrl,
    RoutingKey,
    SinkName,
    SinkUrl,
    Size,
    StoreUrl,
    StreamKey,
    Threshold,
    WebhookSecrets,
    WorkspaceName,
    fail,
    mask_url,
)

DEFAULT_STORE_URL = "sqlite:////var/lib/poller/poller.db"
SOURCE_NAMES = ("batch_jobs", "fine_tuning_jobs", "files", "models", "libraries")
SINK_TYPES = ("file", "http", "log", "nats", "amqp", "redis", "mqtt")


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


def file_context() -> dict[str, Any]:
    """The validation context of the file as written.

    ``unknown`` collects, per unknown key, the line that names it (with a suggestion), so
    that pydantic goes on and reports every unknown key and every bad value at once.
    """
    return {"file": True, "unknown": {}}


class _Section(BaseModel):
    """Base of every config model: frozen, and unknown keys are refused with a suggestion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, Mapping):
            allowed = _keys_of(cls)
            context = info.context if isinstance(info.context, dict) else {}
            # Python callers may also use attribute names (HttpSinkConfig(secrets=...)).
            spelled = allowed if context.get("file") else [*allowed, *cls.model_fields]
            for key in data:
                if key not in spelled:
                    # an attribute name passes extra="forbid": refused here, alone
                    if "unknown" not in context or key in cls.model_fields:
                        raise fail(_unknown_key(key, allowed), str(key), at="key")
                    # extra="forbid" reports it where it is; this says what was meant
                    context["unknown"].setdefault(str(key), _unknown_key(key, allowed))
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
    mass_delete_min: PositiveInt = 10


class PollOverrides(_Section):
    """A workspace's ``poll:`` block: only the keys given override the top-level ``poll``."""

    interval: PositiveDuration | None = None
    active_interval: PositiveDuration | None = None
    emit_existing: bool | None = None
    timeout: PositiveDuration | None = None
    reconcile_interval: PositiveDuration | None = None
    max_backoff: PositiveDuration | None = None
    mass_delete_threshold: Threshold | None = None
    mass_delete_min: PositiveInt | None = None


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


def _source_shorthand(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, bool):
        return {"enabled": value}
    return value


def _also_boolean(schema: dict[str, Any]) -> None:
    schema.setdefault("anyOf", []).append({"type": "boolean"})


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
    libraries: SourceEntry = None


class SourcesConfig(_Section):
    """Effective settings of every source of one workspace."""

    batch_jobs: SourceConfig = Field(default_factory=SourceConfig)
    fine_tuning_jobs: SourceConfig = Field(default_factory=SourceConfig)
    files: SourceConfig = Field(default_factory=SourceConfig)
    models: SourceConfig = Field(default_factory=SourceConfig)
    libraries: SourceConfig = Field(default_factory=SourceConfig)

    def get(self, name: str) -> SourceConfig:
        """The settings of source ``name`` (one of ``SOURCE_NAMES``); ``KeyError`` otherwise."""
        return {
            "batch_jobs": self.batch_jobs,
            "fine_tuning_jobs": self.fine_tuning_jobs,
            "files": self.files,
            "models": self.models,
            "libraries": self.libraries,
        }[name]

    def enabled(self) -> tuple[str, ...]:
        """Names of the enabled sources, in ``SOURCE_NAMES`` order."""
        return tuple(name for name in SOURCE_NAMES if self.get(name).enabled)


class WorkspaceFields(_Section):
    """What a workspace as written and its effective form have in common."""

    base_url: BaseUrl = DEFAULT_BASE_URL
    api_key: OptionalSecret = None
    auth_header: HeaderName = "Authorization"
    auth_scheme: OneLine = "Bearer"
    timeout: PositiveDuration = 30.0
    page_size: PageSize = 100
    max_requests_per_minute: PositiveInt | None = None


class MistralSection(WorkspaceFields):
    """The ``mistral:`` block (one workspace) as written."""

    name: WorkspaceName = "default"
    poll: PollOverrides | None = None
    sources: SourcesSection | None = None


class WorkspaceEntry(MistralSection):
    """One entry of the ``workspaces:`` list as written; ``name`` is required there."""

    name: WorkspaceName


class Workspace(WorkspaceFields):
    """One Mistral workspace with its effective ``poll`` and ``sources``."""

    name: WorkspaceName = "default"
    poll: PollConfig = Field(default_factory=PollConfig)
    sources: SourcesConfig = Field(default_factory=SourcesConfig)


class StoreSection(_Section):
    """The ``store:`` block as written."""

    url: StoreUrl | None = None
    listen: bool = True
    claim_timeout: PositiveDuration = 10.0


class StoreConfig(_Section):
    """Where poller keeps its snapshots and outbox (a SQLAlchemy URL)."""

    url: StoreUrl = DEFAULT_STORE_URL
    listen: bool = True
    """PostgreSQL: wake the dispatchers through LISTEN/NOTIFY as deliveries are committed
    (off behind a transaction-mode pooler, where only polling works)."""
    claim_timeout: PositiveDuration = 10.0
    """How long a delivery claimed by a process that stopped answering waits for it."""

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        yield "url", mask_url(self.url)


class RetryConfig(_Section):
    """When a sink's deliveries are retried and when they are given up."""

    schedule: Annotated[tuple[Duration, ...], Field(min_length=1)] = (
        5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0,
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
    """Events written to standard output, one line each: JSON, or a short readable line
    (``console``; ``auto``: on a terminal)."""

    type: Literal["log"] = "log"
    format: Literal["auto", "json", "console"] = "auto"


class FileSinkConfig(_SinkBase):
    """Events appended as JSON Lines to ``path``."""

    type: Literal["file"] = "file"
    path: Annotated[str, Field(min_length=1)]


class _BrokerSink(_SinkBase):
    """What the message-broker sinks share: a broker URL (credentials allowed, masked
    when shown), the body format and how long to wait for the broker's acknowledgement."""

    url: str
    format: Literal["standard", "cloudevents"] = "standard"
    timeout: PositiveDuration = 15.0

    def __repr_args__(self) -> Iterable[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name == "url" else value


class NatsSinkConfig(_BrokerSink):
    """Events published to NATS JetStream (the ``nats`` extra)."""

    type: Literal["nats"] = "nats"
    url: NatsUrl
    subject: NatsSubject = "poller.{resource}.{action}"


class AmqpSinkConfig(_BrokerSink):
    """Events published to a RabbitMQ (AMQP 0-9-1) exchange (the ``amqp`` extra)."""

    type: Literal["amqp"] = "amqp"
    url: AmqpUrl
    exchange: Annotated[str, Field(min_length=1, max_length=255)]
    routing_key: RoutingKey = "{resource}.{action}"


class RedisSinkConfig(_BrokerSink):
    """Events appended to a Redis stream (the ``redis`` extra)."""

    type: Literal["redis"] = "redis"
    url: RedisUrl
    stream: StreamKey
    maxlen: PositiveInt | None = None


class MqttSinkConfig(_BrokerSink):
    """Events published to an MQTT broker (the ``mqtt`` extra)."""

    type: Literal["mqtt"] = "mqtt"
    url: MqttUrl
    topic: MqttTopic = "poller/{resource}/{action}"
    qos: Qos = 1


BrokerSinkConfig = NatsSinkConfig | AmqpSinkConfig | RedisSinkConfig | MqttSinkConfig
SinkConfig = Annotated[
    HttpSinkConfig
    | LogSinkConfig
    | FileSinkConfig
    | NatsSinkConfig
    | AmqpSinkConfig
    | RedisSinkConfig
    | MqttSinkConfig,
    Field(discriminator="type"),
]
SINK_EXTRAS = {"nats": "nats", "amqp": "aio_pika", "redis": "redis.asyncio", "mqtt": "aiomqtt"}
"""The module each broker sink type needs, installed by the extra of the type's name."""


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


class HaConfig(_Section):
    """Replicas of ``poller run`` sharing one PostgreSQL store (see docs/ha.md)."""

    lease_ttl: LeaseTtl = 15.0
    replica_id: Annotated[OneLine, Field(min_length=1, max_length=255)] | None = None
    """``None``: ``HOSTNAME:PID``, worked out when the daemon starts."""


class ProxyFields(_Section):
    """What the ``proxy:`` block as written and its effective form have in common."""

    enabled: bool = True
    listen: Listen = "127.0.0.1:8787"
    inject_key: bool = False
    token: OptionalSecret = None
    record_content: bool = True
    max_body: Size = 20 * 1024**2
    max_body_ocr: Size = 100 * 1024**2
    read_timeout: PositiveDuration = 600.0
    hosts: tuple[HostName, ...] = ()
    queue_size: PositiveInt = 10_000


class ProxySection(ProxyFields):
    """The ``proxy:`` block as written; ``workspace`` defaults to the first workspace."""

    workspace: WorkspaceName | None = None


class ProxyConfig(ProxyFields):
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
    ha: HaConfig | None = None


def default_sinks() -> tuple[SinkConfig, ...]:
    """The sinks of a file that has none: poller's own log."""
    return (LogSinkConfig(name="log"),)


class Config(_Section):
    """The whole, effective configuration of one poller process."""

    workspaces: Annotated[tuple[Workspace, ...], Field(min_length=1)] = (Workspace(),)
    store: StoreConfig = Field(default_factory=StoreConfig)
    sinks: tuple[SinkConfig, ...] = Field(default_factory=default_sinks)
    ops: OpsConfig = Field(default_factory=OpsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    shutdown: ShutdownConfig = Field(default_factory=ShutdownConfig)
    proxy: ProxyConfig | None = None
    ha: HaConfig = Field(default_factory=HaConfig)
    source: str = "<config>"

    def workspace(self, name: str) -> Workspace:
        """The workspace called ``name``; ``KeyError`` when there is none."""
        for workspace in self.workspaces:
            if workspace.name == name:
                return workspace
        raise KeyError(name)
