"""SIGHUP reloads applied to a running daemon: sinks, filters and intervals, no restart."""

from __future__ import annotations

import asyncio
import json
import pathlib

import structlog

from poller import config as config_mod
from poller.app import App
from poller.reload import Reloader
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer

from .conftest import eventually


def text(api: str, store: str, sinks: str, interval: str = "0.3s") -> str:
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: {store}\n"
        f"poll:\n  interval: {interval}\n  active_interval: 0.2s\nsinks:\n{sinks}"
    )


def file_sink(name: str, path: pathlib.Path, events: str = '["*"]') -> str:
    return f"  - name: {name}\n    type: file\n    path: {path}\n    events: {events}\n"


def types(path: pathlib.Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["type"] for line in path.read_text().splitlines()]


async def test_sinks_filters_and_intervals_change_without_restart(
    sim: Simulator, server: SimulatorServer, store_file: str, tmp_path: pathlib.Path
) -> None:
    """A reload adds a sink, narrows another's filter, removes a third and retunes polling."""
    first, second, third = (tmp_path / f"{n}.jsonl" for n in ("first", "second", "third"))
    path = tmp_path / "poller.yaml"
    path.write_text(
        text(server.url, store_file, file_sink("first", first) + file_sink("third", third))
    )
    config = config_mod.load(path)
    stop, hangup = asyncio.Event(), asyncio.Event()
    async with App(config) as app:
        runner = Runner(app)
        reloader = Reloader(app, runner, hangup)
        app.services.append(reloader)
        task = asyncio.create_task(runner.run(stop, grace=1))
        await eventually(lambda: app.board.first_cycle_done)
        sim.create_file()
        await eventually(lambda: types(first) == ["file.uploaded"] == types(third))
        path.write_text(
            text(
                server.url,
                store_file,
                file_sink("first", first, '["batch_job.*"]') + file_sink("second", second),
                interval="5s",
            )
        )
        with structlog.testing.capture_logs() as captured:
            hangup.set()
            await eventually(lambda: any(e["event"] == "config_reloaded" for e in captured))
        sim.create_file()
        sim.create_batch_job()
        await eventually(lambda: sorted(types(second)) == ["batch_job.created", "file.uploaded"])
        await eventually(lambda: types(first) == ["file.uploaded", "batch_job.created"])
        stop.set()
        await task
    assert types(third) == ["file.uploaded"]  # removed: the later events never reached it
    reloaded = next(e for e in captured if e["event"] == "config_reloaded")
    assert reloaded["sinks_added"] == ["second"] and reloaded["sinks_removed"] == ["third"]
    assert reloaded["sinks_refiltered"] == ["first"]
    assert len(reloaded["sources_retuned"]) == 5
    assert app.config.workspace("default").sources.get("files").interval == 5
    assert not any(e["event"] == "config_restart_needed" for e in captured)


async def test_an_invalid_file_is_refused_and_the_running_config_stays(
    server: SimulatorServer, store_file: str, tmp_path: pathlib.Path
) -> None:
    """A reload of a broken file logs one error line and changes nothing."""
    out = tmp_path / "events.jsonl"
    path = tmp_path / "poller.yaml"
    path.write_text(text(server.url, store_file, file_sink("archive", out)))
    async with App(config_mod.load(path)) as app:
        reloader = Reloader(app, Runner(app), asyncio.Event())
        before = app.config
        path.write_text(text(server.url, store_file, file_sink("archive", out), interval="often"))
        with structlog.testing.capture_logs() as captured:
            assert await reloader.reload() is None
        assert app.config is before
    (refused,) = [e for e in captured if e["event"] == "config_reload_refused"]
    assert refused["log_level"] == "error"
    assert refused["reason"].startswith(f"{path}:6: poll.interval: 'often' is not a duration")
    assert refused["problems"] == [refused["reason"]]


async def test_what_cannot_change_live_is_named_in_a_warning(
    server: SimulatorServer, store_file: str, tmp_path: pathlib.Path
) -> None:
    """A new store URL keeps its running value, and a warning says a restart applies it."""
    out = tmp_path / "events.jsonl"
    path = tmp_path / "poller.yaml"
    path.write_text(text(server.url, store_file, file_sink("archive", out)))
    async with App(config_mod.load(path)) as app:
        reloader = Reloader(app, Runner(app), asyncio.Event())
        other = f"sqlite:///{tmp_path}/other.db"
        path.write_text(text(server.url, other, file_sink("archive", out)))
        with structlog.testing.capture_logs() as captured:
            await reloader.reload()
        assert app.config.store.url == store_file
    (warning,) = [e for e in captured if e["event"] == "config_restart_needed"]
    assert warning["changes"] == ["store changed"]
