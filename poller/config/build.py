"""Normalising the file as written into the effective :class:`~poller.config.models.Config`.

Every workspace gets its merged ``poll`` and ``sources``; sinks and the proxy are checked
against the workspace names; the store URL falls back to systemd's ``$STATE_DIRECTORY``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from poller.config.errors import kind_of, translate
from poller.config.fields import is_loopback, split_listen
from poller.config.models import (
    DEFAULT_STORE_URL,
    FILE,
    SOURCE_NAMES,
    Config,
    ConfigFile,
    HaConfig,
    LogConfig,
    MistralSection,
    OpsConfig,
    PollConfig,
    PollOverrides,
    ProxyConfig,
    ProxyFields,
    ProxySection,
    ShutdownConfig,
    SinkConfig,
    SourceConfig,
    SourcesConfig,
    SourceSection,
    SourcesSection,
    StoreConfig,
    StoreSection,
    Workspace,
    WorkspaceFields,
    default_sinks,
)
from poller.config.reader import EXAMPLE_PATH, Path, Where, dotted
from poller.exceptions import ConfigError


def build(data: Any, where: Where, environ: Mapping[str, str]) -> Config:
    """The effective Config of ``data`` (shaped like the file), or its first problem."""
    if not isinstance(data, Mapping):
        raise ConfigError(
            "the file must be a mapping of sections (mistral, store, poll, sinks, ...), "
            f"not {kind_of(data)}; see {EXAMPLE_PATH}",
            path=where.source,
            line=where.line(()),
        )
    try:
        raw = ConfigFile.model_validate(data, context=FILE)
    except ValidationError as exc:
        raise translate(exc, data, where) from None
    workspaces = _workspaces(raw, where)
    names = [workspace.name for workspace in workspaces]
    store_url = _store_default(raw.store, environ)
    return Config(
        workspaces=workspaces,
        store=StoreConfig(url=store_url),
        ha=_ha(raw.ha, store_url, where),
        sinks=_sinks(raw.sinks, names, where),
        ops=raw.ops or OpsConfig(),
        log=raw.log or LogConfig(),
        shutdown=raw.shutdown or ShutdownConfig(),
        proxy=_proxy(raw.proxy, workspaces, where),
        source=where.source,
    )


def _workspaces(raw: ConfigFile, where: Where) -> tuple[Workspace, ...]:
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
                f"duplicate workspace name '{entry.name}' (also {dotted(seen[entry.name])}); "
                "give each workspace its own name",
            )
        seen[entry.name] = path
        fields = {name: getattr(entry, name) for name in WorkspaceFields.model_fields}
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


def _ha(raw: HaConfig | None, store_url: str, where: Where) -> HaConfig:
    if raw is None:
        return HaConfig()
    if not store_url.startswith("postgresql"):
        raise where.error(
            ("ha",),
            "HA needs a PostgreSQL store shared by the replicas; set store.url to "
            "postgresql+psycopg://… "
            "or remove the ha: section (a SQLite store runs one daemon)",
            at="key",
        )
    return raw


def _sinks(
    raw: tuple[SinkConfig, ...] | None, workspaces: list[str], where: Where
) -> tuple[SinkConfig, ...]:
    if raw is None:
        return default_sinks()
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


def _proxy(
    raw: ProxySection | None, workspaces: tuple[Workspace, ...], where: Where
) -> ProxyConfig | None:
    if raw is None:
        return None
    names = [ws.name for ws in workspaces]
    if raw.workspace is not None and raw.workspace not in names:
        raise where.error(
            ("proxy", "workspace"),
            f"unknown workspace '{raw.workspace}'; known: {', '.join(names)}",
        )
    if raw.token is not None and not raw.inject_key:
        raise where.error(
            ("proxy", "token"),
            "a token is only used with inject_key: true (clients then send it instead of an "
            "API key); remove it or set inject_key: true",
        )
    if raw.inject_key and raw.token is None:
        raise where.error(
            ("proxy", "inject_key"),
            "inject_key: true needs a token that local clients must send; "
            "set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
        )
    if raw.inject_key and not is_loopback(split_listen(raw.listen)[0]):
        raise where.error(
            ("proxy", "listen"),
            f"'{raw.listen}' is not a loopback address; with inject_key: true the proxy must "
            "listen on 127.0.0.1, ::1 or localhost",
        )
    upstream = workspaces[names.index(raw.workspace or names[0])]
    if raw.inject_key and upstream.api_key is None:
        raise where.error(
            ("proxy", "inject_key"),
            f"workspace '{upstream.name}' has no api_key to inject; set its api_key, "
            "or let clients send their own key (inject_key: false)",
        )
    fields = {name: getattr(raw, name) for name in ProxyFields.model_fields}
    return ProxyConfig(**fields, workspace=raw.workspace or names[0])
