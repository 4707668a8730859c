"""Normalising the file as written into the effective :class:`~poller.config.models.Config`.

Every workspace gets its merged ``poll`` and ``sources``; sinks and the proxy are checked
against the workspace names; the store URL falls back to systemd's ``$STATE_DIRECTORY``.
Every problem found is reported, not only the first.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from poller.config.errors import kind_of, translate
from poller.config.fields import is_loopback, split_listen
from poller.config.models import (
    DEFAULT_STORE_URL,
    SINK_EXTRAS,
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
    SourcesConfig,
    SourceSection,
    SourcesSection,
    StoreConfig,
    StoreSection,
    Workspace,
    WorkspaceFields,
    default_sinks,
    file_context,
)
from poller.config.reader import EXAMPLE_PATH, Path, Where, dotted
from poller.exceptions import ConfigError


def build(
    data: Any,
    where: Where,
    environ: Mapping[str, str],
    directory_exists: Callable[[str], bool] | None = None,
) -> Config:
    """The effective Config of ``data`` (shaped like the file), or every problem found in it.

    ``directory_exists``, when given, is asked whether the directory of a SQLite store
    exists: the daemon creates the database file but never its directory.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            "the file must be a mapping of sections (mistral, store, poll, sinks, ...), "
            f"not {kind_of(data)}; see {EXAMPLE_PATH}",
            path=where.source,
            line=where.line(()),
        )
    written = data.get("store")
    written = written.get("url") if isinstance(written, Mapping) else None
    store = _store_default(written if isinstance(written, str) else None, environ)
    # the bare default is left to the daemon: systemd's StateDirectory= or a package makes
    # /var/lib/poller when the service starts, not before check-config runs
    checked = written is not None or store != DEFAULT_STORE_URL
    if directory_exists is not None and checked and not where.is_broken(("store", "url")):
        _check_store_directory(store, written is not None, where, directory_exists)
    context = file_context()
    try:
        raw = ConfigFile.model_validate(data, context=context)
    except ValidationError as exc:
        raise _refused(where, translate(exc, data, where, context["unknown"])) from None
    workspaces = _workspaces(raw, where)
    names = [workspace.name for workspace in workspaces]
    sinks = _sinks(raw.sinks, names, where)
    proxy = _proxy(raw.proxy, workspaces, where)
    ha = _ha(raw.ha, store, where)
    if where.problems:
        raise _refused(where)
    return Config(
        workspaces=workspaces,
        store=_store(raw.store, store),
        ha=ha,
        sinks=sinks,
        ops=raw.ops or OpsConfig(),
        log=raw.log or LogConfig(),
        shutdown=raw.shutdown or ShutdownConfig(),
        proxy=proxy,
        source=where.source,
    )


def _refused(where: Where, more: list[ConfigError] | None = None) -> ConfigError:
    """Every problem found, in file order (those without a line last), as one error."""
    problems = [*where.problems, *(more or [])]
    ordered = sorted(problems, key=lambda p: math.inf if p.line is None else p.line)
    return ConfigError.several(ordered)


def _workspaces(raw: ConfigFile, where: Where) -> tuple[Workspace, ...]:
    if raw.mistral is not None and raw.workspaces is not None:
        where.note(
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
            where.note(
                (*path, "name"),
                f"duplicate workspace name '{entry.name}' (also {dotted(seen[entry.name])}); "
                "give each workspace its own name",
            )
            continue
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
    defaults = SourcesConfig()
    for name in SOURCE_NAMES:
        base: SourceSection = getattr(top, name) or SourceSection()
        mine: SourceSection = (getattr(own, name) if own else None) or SourceSection()
        # a source's own keys (batch_jobs.emit_started, ...) are inherited the same way
        written = {**base.model_dump(exclude_none=True), **mine.model_dump(exclude_none=True)}
        merged[name] = type(defaults.get(name))(
            **{
                **written,
                "enabled": _first(mine.enabled, base.enabled, True),
                "interval": _first(mine.interval, base.interval, poll.interval),
                "active_interval": _first(
                    mine.active_interval, base.active_interval, poll.active_interval
                ),
            }
        )
    return SourcesConfig(**merged)


def _store(raw: StoreSection | None, url: str) -> StoreConfig:
    section = raw or StoreSection()
    return StoreConfig(url=url, listen=section.listen, claim_timeout=section.claim_timeout)


def _store_default(written: str | None, environ: Mapping[str, str]) -> str:
    if written is not None:
        return written
    # systemd's StateDirectory= may list several directories, separated by ':'.
    state = environ.get("STATE_DIRECTORY", "").split(":")[0].rstrip("/")
    return f"sqlite:///{state}/poller.db" if state else DEFAULT_STORE_URL


def _ha(raw: HaConfig | None, store_url: str, where: Where) -> HaConfig:
    if raw is None:
        return HaConfig()
    if not store_url.startswith("postgresql"):
        where.note(
            ("ha",),
            "HA needs a PostgreSQL store shared by the replicas; set store.url to "
            "postgresql+psycopg://… "
            "or remove the ha: section (a SQLite store runs one daemon)",
            at="key",
        )
    return raw


def _check_store_directory(
    url: str, written: bool, where: Where, exists: Callable[[str], bool]
) -> None:
    """Note a SQLite store whose directory is missing: the daemon would not create it."""
    scheme, _, rest = url.partition("://")
    if not scheme.lower().startswith("sqlite") or not rest.startswith("/"):
        return  # not SQLite, or not a file: the URL's own check reports it
    database = rest[1:].partition("?")[0]
    directory = os.path.dirname(database) or "."
    if exists(directory):
        return
    if written:
        message = f"the directory {directory} does not exist; create it "
        change = "or change store.url"
    else:
        message = f"not set, so the store is {database}, but {directory} does not exist; create it "
        change = "or set store.url"
    where.note(("store", "url"), f"{message}(install -d -m 0700 {directory}) {change}")


def _sinks(
    raw: tuple[SinkConfig, ...] | None, workspaces: list[str], where: Where
) -> tuple[SinkConfig, ...]:
    if raw is None:
        return default_sinks()
    seen: dict[str, int] = {}
    for i, sink in enumerate(raw):
        if sink.name in seen:
            where.note(
                ("sinks", i, "name"),
                f"duplicate sink name '{sink.name}' (also sinks[{seen[sink.name]}]); "
                "give each sink its own name",
            )
        seen.setdefault(sink.name, i)
        if sink.type in SINK_EXTRAS and not _importable(SINK_EXTRAS[sink.type]):
            where.note(
                ("sinks", i, "type"),
                f"{sink.type} needs the {sink.type} extra: pip install 'poller[{sink.type}]'",
            )
        for j, name in enumerate(sink.workspaces or ()):
            if name not in workspaces:
                where.note(
                    ("sinks", i, "workspaces", j),
                    f"unknown workspace '{name}'; known: {', '.join(workspaces)}",
                )
    return raw


def _importable(module: str) -> bool:
    """Whether ``module`` (a broker sink's client library) can be imported here."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _proxy(
    raw: ProxySection | None, workspaces: tuple[Workspace, ...], where: Where
) -> ProxyConfig | None:
    if raw is None:
        return None
    names = [ws.name for ws in workspaces]
    if raw.workspace is not None and raw.workspace not in names:
        where.note(
            ("proxy", "workspace"),
            f"unknown workspace '{raw.workspace}'; known: {', '.join(names)}",
        )
    if raw.token is not None and not raw.inject_key:
        where.note(
            ("proxy", "token"),
            "a token is only used with inject_key: true (clients then send it instead of an "
            "API key); remove it or set inject_key: true",
        )
    if raw.inject_key and raw.token is None:
        where.note(
            ("proxy", "inject_key"),
            "inject_key: true needs a token that local clients must send; "
            "set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
        )
    if raw.inject_key and not is_loopback(split_listen(raw.listen)[0]):
        where.note(
            ("proxy", "listen"),
            f"'{raw.listen}' is not a loopback address; with inject_key: true the proxy must "
            "listen on 127.0.0.1, ::1 or localhost",
        )
    known = raw.workspace is None or raw.workspace in names
    upstream = workspaces[names.index(raw.workspace or names[0])] if known else None
    if raw.inject_key and upstream is not None and upstream.api_key is None:
        where.note(
            ("proxy", "inject_key"),
            f"workspace '{upstream.name}' has no api_key to inject; set its api_key, "
            "or let clients send their own key (inject_key: false)",
        )
    fields = {name: getattr(raw, name) for name in ProxyFields.model_fields}
    return ProxyConfig(**fields, workspace=raw.workspace or names[0])
