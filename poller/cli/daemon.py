"""``poller run`` and ``poller once``: the daemon, continuous or for one pass."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Any

import click

from poller import config as config_mod
from poller import render
from poller.cli.common import (
    config_option,
    fail,
    guarded,
    install_stop,
    json_option,
    load_config,
    run_async,
    setup_logging,
)

if TYPE_CHECKING:
    from poller.runner import SourceOutcome


@click.command()
@config_option
@guarded
def run(config_path: str | None) -> None:
    """Run the daemon: poll every source, deliver every event, until SIGTERM (SIGHUP reloads)."""
    config = load_config(config_path, daemon=True)
    setup_logging(config)
    run_async(_run(config))


async def _run(config: config_mod.Config) -> None:
    from poller import daemon

    stop = asyncio.Event()
    install_stop(stop)
    hangup = asyncio.Event()  # SIGHUP: reload the config file
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup.set)
    await daemon.run(config, stop, hangup=hangup)


@click.command()
@config_option
@json_option
@guarded
def once(config_path: str | None, as_json: bool) -> None:
    """Poll every source once, deliver what is due, exit (for cron and tests).

    Exits 1 when any poll failed. The summary goes to standard error, or as JSON
    (``--json``) to standard output after everything the sinks wrote there.
    """
    config = load_config(config_path, daemon=True)
    setup_logging(config)
    outcomes = run_async(_once(config))
    rows = [once_row(o) for o in outcomes]
    if as_json:
        click.echo(render.to_json(rows))
    else:
        columns = ["workspace", "source", "outcome", "mode", "events", "requests", "error"]
        click.echo(render.table(rows, columns), err=True)
    failed = [f"{o.workspace}/{o.source}" for o in outcomes if o.failed]
    if failed:
        fail(f"{len(failed)} poll(s) failed: {', '.join(failed)}")


def once_row(outcome: SourceOutcome) -> dict[str, Any]:
    """One source's line of the ``poller once`` summary."""
    report = outcome.report
    return {
        "workspace": outcome.workspace,
        "source": outcome.source,
        "outcome": "error" if outcome.failed else "disabled" if outcome.disabled else "ok",
        "mode": report.mode if report else None,
        "events": len(report.events) if report else 0,
        "requests": report.requests if report else None,
        "error": outcome.error or outcome.disabled,
    }


async def _once(config: config_mod.Config) -> list[SourceOutcome]:
    from poller.app import App
    from poller.runner import Runner

    async with App(config) as app:
        return await Runner(app).once()
