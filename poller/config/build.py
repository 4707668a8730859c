"""Normalising the file as written into the effective :class:`~poller.config.models.Config`.

Every workspace gets its merged ``poll`` and ``sources``; the store URL falls back to
systemd's ``$STATE_DIRECTORY``. Every problem found is reported, not only the first: the
values' own (pydantic, ``errors``) and those across sections (``across``) in one go.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from poller.config import across
from poller.config.errors import kind_of, translate
from poller.config.models import (
    DEFAULT_STORE_URL,
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
    SourceConfig,
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
from poller.config.reader import EXAMPLE_PATH, Where
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
        problems = translate(exc, data, where, context["unknown"])
        across.check(data, where, store, taken={p.key for p in problems if p.key})
        raise _refused(where, problems) from None
    across.check(data, where, store, taken=())
    if where.problems:
        raise _refused(where)
    workspaces = _workspaces(raw)
    return Config(
        workspaces=workspaces,
        store=_store(raw.store, store),
        ha=raw.ha or HaConfig(),
        sinks=raw.sinks or default_sinks(),
        ops=raw.ops or OpsConfig(),
        log=raw.log or LogConfig(),
        shutdown=raw.shutdown or ShutdownConfig(),
        proxy=_proxy(raw.proxy, workspaces),
        source=where.source,
    )


def _refused(where: Where, more: list[ConfigError] | None = None) -> ConfigError:
    """Every problem found, in file order (those without a line last), as one error."""
    problems = [*where.problems, *(more or [])]
    ordered = sorted(problems, key=lambda p: math.inf if p.line is None else p.line)
    return ConfigError.several(ordered)


def _workspaces(raw: ConfigFile) -> tuple[Workspace, ...]:
    entries: list[MistralSection] = [raw.mistral or MistralSection()]
    if raw.workspaces is not None:
        entries = list(raw.workspaces)
    poll = raw.poll or PollConfig()
    sources = raw.sources or SourcesSection()
    out = []
    for entry in entries:
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


def _store(raw: StoreSection | None, url: str) -> StoreConfig:
    section = raw or StoreSection()
    return StoreConfig(url=url, listen=section.listen, claim_timeout=section.claim_timeout)


def _store_default(written: str | None, environ: Mapping[str, str]) -> str:
    if written is not None:
        return written
    # systemd's StateDirectory= may list several directories, separated by ':'.
    state = environ.get("STATE_DIRECTORY", "").split(":")[0].rstrip("/")
    return f"sqlite:///{state}/poller.db" if state else DEFAULT_STORE_URL


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


def _proxy(raw: ProxySection | None, workspaces: tuple[Workspace, ...]) -> ProxyConfig | None:
    if raw is None:
        return None
    fields = {name: getattr(raw, name) for name in ProxyFields.model_fields}
    return ProxyConfig(**fields, workspace=raw.workspace or workspaces[0].name)
