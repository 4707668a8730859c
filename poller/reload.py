"""Reloading the config file on SIGHUP, without a restart.

``plan`` (pure) compares the running configuration with the new file. Sinks are added,
removed or rebuilt (a changed URL, secret, retry policy…); a sink whose only change is its
``events``/``workspaces`` filter keeps its worker; polling intervals and the other ``poll``
keys of running sources change in place, and so does ``log``. What cannot change in a
running process — the workspaces' connections and which sources they poll, the store, the
ops listener, the proxy, the shutdown grace — keeps its running value and is named in one
warning saying a restart applies it.

``Reloader`` is the service that waits for SIGHUP, reads the same file again and applies the
plan. A file that does not load is refused with one error line; the running config stays.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import structlog

from poller import config as config_mod
from poller import logs
from poller.app import App, secrets_of
from poller.exceptions import ConfigError
from poller.runner import Runner
from poller.sdnotify import Notifier

log = structlog.get_logger("poller.reload")

RESTART_SECTIONS = ("store", "ops", "proxy", "shutdown", "ha")
_WORKSPACE_LIVE = ("name", "poll", "sources")


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a reload changes, and the configuration that runs afterwards."""

    config: config_mod.Config
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    rebuilt: tuple[str, ...] = ()
    refiltered: tuple[str, ...] = ()
    retuned: tuple[tuple[str, str], ...] = ()
    """(workspace, source) pairs whose intervals or other ``poll`` keys changed."""
    log_changed: bool = False
    restart: tuple[str, ...] = ()
    """Changes that wait for a restart, one phrase each (keys only, never values)."""

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.rebuilt
            or self.refiltered
            or self.retuned
            or self.log_changed
        )


def plan(old: config_mod.Config, new: config_mod.Config) -> Plan:
    """How to go from the running ``old`` to the file's ``new``, and what must wait."""
    restart = [
        f"{key} changed" for key in RESTART_SECTIONS if getattr(old, key) != getattr(new, key)
    ]
    new_ws = {w.name: w for w in new.workspaces}
    old_names = {w.name for w in old.workspaces}
    restart += [f"workspace {n} added" for n in new_ws if n not in old_names]
    workspaces: list[config_mod.Workspace] = []
    retuned: list[tuple[str, str]] = []
    for ws in old.workspaces:
        target = new_ws.get(ws.name)
        if target is None:
            restart.append(f"workspace {ws.name} removed")
            workspaces.append(ws)
            continue
        fields = [
            key
            for key in type(ws).model_fields
            if key not in _WORKSPACE_LIVE and getattr(ws, key) != getattr(target, key)
        ]
        if fields:
            restart.append(f"workspace {ws.name}: {', '.join(fields)} changed")
        if ws.sources.enabled() != target.sources.enabled():
            restart.append(f"workspace {ws.name}: sources switched on or off")
        # the sources that run keep running, with the new file's intervals
        sources = config_mod.SourcesConfig(
            **{
                name: target.sources.get(name).model_copy(
                    update={"enabled": ws.sources.get(name).enabled}
                )
                for name in config_mod.SOURCE_NAMES
            }
        )
        applied = ws.model_copy(update={"poll": target.poll, "sources": sources})
        retuned += [
            (ws.name, name)
            for name in ws.sources.enabled()
            if (ws.poll, ws.sources.get(name)) != (applied.poll, applied.sources.get(name))
        ]
        workspaces.append(applied)

    old_sinks = {s.name: s for s in old.sinks}
    new_sinks = {s.name: s for s in new.sinks}
    rebuilt: list[str] = []
    refiltered: list[str] = []
    for name in old_sinks.keys() & new_sinks.keys():
        before, after = old_sinks[name], new_sinks[name]
        if before == after:
            continue
        same_but_filters = before.model_copy(
            update={"events": after.events, "workspaces": after.workspaces}
        )
        (refiltered if same_but_filters == after else rebuilt).append(name)

    running = new.model_copy(
        update={
            "workspaces": tuple(workspaces),
            **{key: getattr(old, key) for key in RESTART_SECTIONS},
        }
    )
    return Plan(
        config=running,
        added=tuple(n for n in new_sinks if n not in old_sinks),
        removed=tuple(n for n in old_sinks if n not in new_sinks),
        rebuilt=tuple(sorted(rebuilt)),
        refiltered=tuple(sorted(refiltered)),
        retuned=tuple(retuned),
        log_changed=old.log != new.log,
        restart=tuple(restart),
    )


class Reloader:
    """Waits for SIGHUP (``hangup``) and applies the config file again; a service."""

    name = "reload"

    def __init__(
        self,
        app: App,
        runner: Runner,
        hangup: asyncio.Event,
        *,
        notifier: Notifier | None = None,
        load: Callable[[str], config_mod.Config] = config_mod.load,
        status: Callable[[], str] = lambda: "running",
    ) -> None:
        self.app = app
        self.runner = runner
        self.hangup = hangup
        self.notifier = notifier
        self.load = load
        self.status = status

    async def run(self, stop: asyncio.Event) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                hangup = asyncio.ensure_future(self.hangup.wait())
                await asyncio.wait({hangup, stopping}, return_when=asyncio.FIRST_COMPLETED)
                hangup.cancel()
                if stop.is_set():
                    return
                self.hangup.clear()
                await self.reload()
        finally:
            stopping.cancel()

    async def reload(self) -> Plan | None:
        """Read the file again and apply it; None when it was refused."""
        source = self.app.config.source
        if self.notifier is not None:
            self.notifier.reloading()
        try:
            new = await asyncio.to_thread(self.load, source)
        except ConfigError as exc:
            self.app.metrics.reloads.labels("refused").inc()
            problems = [self.app.redactor.redact(p.render()) for p in exc.problems]
            log.error(
                "config_reload_refused",
                reason=problems[0],
                problems=problems,
                consequence="the running configuration stays",
            )
            self._ready()
            return None
        result = plan(self.app.config, new)
        await self.apply(result, new)
        self.app.metrics.reloads.labels("applied").inc()
        log.info(
            "config_reloaded",
            source=source,
            sinks_added=list(result.added),
            sinks_removed=list(result.removed),
            sinks_rebuilt=list(result.rebuilt),
            sinks_refiltered=list(result.refiltered),
            sources_retuned=[f"{w}/{s}" for w, s in result.retuned],
            log_changed=result.log_changed,
        )
        if result.restart:
            log.warning(
                "config_restart_needed",
                changes=list(result.restart),
                consequence="these keep their running values until poller restarts",
            )
        self._ready()
        return result

    async def apply(self, result: Plan, new: config_mod.Config) -> None:
        """Make ``result`` the running configuration."""
        app, runner = self.app, self.runner
        # the old secrets stay masked too: they may still sit in a message in flight
        secrets = {*secrets_of(app.config), *secrets_of(new)}
        app.redactor.update(secrets)
        if result.log_changed:
            logs.configure(level=new.log.level, fmt=new.log.format, secrets=secrets)
        else:
            logs.REDACTOR.update(secrets)
        app.config = result.config  # the router reads the sinks' filters from here
        for name in (*result.removed, *result.rebuilt):
            await runner.stop_worker(name)
            await app.remove_sink(name)
        sinks = {s.name: s for s in result.config.sinks}
        for name in (*result.rebuilt, *result.added):
            app.add_sink(sinks[name])
            runner.start_worker(name)
        for ws_name in dict.fromkeys(w for w, _s in result.retuned):
            app.retune(result.config.workspace(ws_name))
        for ws_name, source in result.retuned:
            ws = next(w for w in app.workspaces if w.name == ws_name)
            runner.poll_soon(ws_name, source, ws.paces[source].interval)

    def _ready(self) -> None:
        if self.notifier is not None:
            self.notifier.send("READY=1", f"STATUS={self.status()}")
