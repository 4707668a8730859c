"""``poller simulate`` and ``poller demo``: the built-in simulator, alone or with the daemon."""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
from typing import Any

import click

from poller import config as config_mod
from poller import logs
from poller.cli.common import (
    install_stop,
    run_async,
    setup_logging,
)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--api-key", envvar="SIMULATOR_API_KEY", default=None, help="Require this key.")
@click.option(
    "--fine-tuning/--no-fine-tuning",
    default=True,
    show_default=True,
    help="Serve /v1/fine_tuning (it answers 404 when off, as deprecated upstream).",
)
@click.option(
    "--activity/--no-activity",
    default=False,
    show_default=True,
    help="Generate jobs, files, models, documents and workflow runs on its own.",
)
@click.option(
    "--scenario", type=click.Choice(["empty", "demo"]), default="empty", show_default=True
)
@click.option("--seed", type=int, default=None, help="Seed of its random choices.")
def simulate(
    host: str,
    port: int,
    api_key: str | None,
    fine_tuning: bool,
    activity: bool,
    scenario: str,
    seed: int | None,
) -> None:
    """Serve the built-in Mistral API simulator (list/get endpoints, lifecycles, faults)."""
    from poller.simulator import Simulator

    logs.configure(level="info", secrets=[api_key] if api_key else [])
    sim = Simulator(
        api_key=api_key,
        fine_tuning=fine_tuning,
        activity=activity,
        scenario=None if scenario == "empty" else scenario,
        seed=seed,
    )
    click.echo(f"simulator: http://{host}:{port}/v1 (control API under /_sim)", err=True)
    run_async(_simulate(sim, host, port))


async def _simulate(sim: Any, host: str, port: int) -> None:
    from poller.simulator import serve

    stop = asyncio.Event()
    install_stop(stop)
    await serve(sim, host, port, stop=stop)


def demo_config(base_url: str, store_url: str) -> config_mod.Config:
    """The embedded demo configuration: the simulator, SQLite, the log sink, no API key."""
    return config_mod.from_mapping(
        {
            "mistral": {"base_url": base_url},
            "store": {"url": store_url},
            "poll": {"interval": "2s", "active_interval": "1s", "reconcile_interval": "1m"},
            "sinks": [{"name": "console", "type": "log"}],
            "log": {"level": "info"},
        },
        source="<demo>",
    )


@click.command()
@click.option(
    "--store",
    "store_path",
    default=None,
    metavar="PATH",
    help="SQLite file to keep (default: a fresh temporary one).",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
def demo(store_path: str | None, duration: float | None) -> None:
    """The simulator and the daemon together: events appear on stdout within seconds."""
    run_async(_demo(store_path, duration))


async def _demo(store_path: str | None, duration: float | None) -> None:
    from poller import daemon
    from poller.simulator import Simulator, bind, serve

    sock = bind("127.0.0.1", 0)  # a free port, held from the start
    port = sock.getsockname()[1]
    sim = Simulator(activity=True, scenario="demo")
    stop = asyncio.Event()
    install_stop(stop)
    ready = asyncio.Event()
    async with daemon.lifetime():  # `stopped` once the simulator is down too
        server = asyncio.create_task(serve(sim, ready=ready, stop=stop, sock=sock))
        await ready.wait()
        await _demo_daemon(port, stop, store_path, duration)
        await server


async def _demo_daemon(
    port: int, stop: asyncio.Event, store_path: str | None, duration: float | None
) -> None:
    from poller.app import App
    from poller.runner import Runner

    with tempfile.TemporaryDirectory(prefix="poller-demo-") as tmp:
        path = store_path or f"{tmp}/demo.db"
        # the demo picks its store's place, so it makes the directory (the daemon never does)
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        config = demo_config(f"http://127.0.0.1:{port}/v1", f"sqlite:///{path}")
        setup_logging(config)
        click.echo(
            f"poller demo: simulator at http://127.0.0.1:{port}/v1, store {path}. "
            "Events print below, one line each (Ctrl-C to stop).",
            err=True,
        )
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        async with App(config) as app:
            await Runner(app).run(stop, grace=2.0)
