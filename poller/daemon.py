"""``poller run``: an App and its Runner, with the parts only a long-running daemon has.

Beside polling and delivery run, as ``App.services``: the ops listener (when ``ops.listen``
is set), the systemd notifications (when ``$NOTIFY_SOCKET`` is set), the SIGHUP reloader and
the watch on the store's schema revision (a newer release's stops this daemon).
``stop`` (SIGTERM/SIGINT) ends it all; ``hangup`` (SIGHUP) asks for a reload. ``stopped``
is its last log line, written once everything it opened is closed: the app, the store's lock
file and the threads of its blocking work (see ``executor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping

import structlog

from poller import config as config_mod
from poller import executor, leadership, ops, reload, schemawatch, sdnotify
from poller.app import App
from poller.runner import Runner
from poller.store import lockfile

log = structlog.get_logger("poller.daemon")


def status_line(app: App) -> str:
    """A one-line summary for systemd's STATUS=."""
    sources = len(app.board.sources)
    failing = app.board.failing()
    line = f"polling {sources} source{'s' * (sources != 1)}, {len(app.workers)} sink(s)"
    return f"{line}; failing: {', '.join(failing)}" if failing else line


async def run(
    config: config_mod.Config,
    stop: asyncio.Event,
    *,
    hangup: asyncio.Event | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Run the daemon until ``stop`` is set.

    On a SQLite store it first takes the store's lock file: one daemon per SQLite store.
    """
    env = os.environ if environ is None else environ
    held = contextlib.ExitStack()
    lock = lockfile.path_for(config.store.url)
    if lock is not None:  # refused here, before anything started: nothing to say stopped
        replica = config.ha.replica_id or leadership.default_replica_id(env)
        held.enter_context(lockfile.exclusive(lock, replica))
    async with lifetime():
        with held:
            await _run(config, stop, hangup, env)


@contextlib.asynccontextmanager
async def lifetime() -> AsyncIterator[None]:
    """The span of a daemon (``poller run``, ``poller demo``): its blocking work runs in a
    pool of its own (``executor``), and ``stopped`` is logged once everything inside, and
    every call still running in that pool, has ended."""
    try:
        async with executor.owned():
            yield
    finally:
        log.info("stopped")


async def _run(
    config: config_mod.Config,
    stop: asyncio.Event,
    hangup: asyncio.Event | None,
    env: Mapping[str, str],
) -> None:
    async with App(config) as app:
        runner = Runner(app)
        if config.ops.listen is not None:
            sock = ops.bind(config.ops.listen, source=config.source)
            check = ops.ReadinessCheck(
                app.board,
                app.store,
                redact=app.redactor.redact,
                leases=app.leadership.not_ready if app.leadership else None,
            )
            app.services.append(ops.OpsListener(sock, app.metrics, check))
        notifier = sdnotify.Notifier.from_environ(env)
        if notifier is not None:
            app.services.append(
                sdnotify.Watchdog(
                    notifier,
                    app.board,
                    interval=sdnotify.watchdog_interval(env),
                    status=lambda: status_line(app),
                )
            )
        app.services.append(
            schemawatch.SchemaWatch(
                app.store.engine,
                interval=config.store.claim_timeout / 3,
                on_newer=app.halt,
            )
        )
        app.services.append(
            reload.Reloader(
                app,
                runner,
                hangup or asyncio.Event(),
                notifier=notifier,
                status=lambda: status_line(app),
            )
        )
        await runner.run(stop, grace=config.shutdown.grace_period)
