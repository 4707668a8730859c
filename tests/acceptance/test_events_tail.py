"""`poller events tail`: a process following events as they are recorded, ended by Ctrl-C."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

import sqlalchemy as sa

from poller import catalog, store
from poller.model import Event
from poller.store.intake import add_events

from .conftest import ROOT, env

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def record(engine: sa.Engine, n: int, event_type: str) -> Event:
    event = Event(
        catalog.event_id("default", event_type, f"f{n}"),
        event_type,
        "default",
        f"f{n}",
        T0 + dt.timedelta(seconds=n),
        catalog.payload(event_type, {"id": f"f{n}", "status": "QUEUED", "model": "m"}),
    )
    with engine.begin() as conn:
        add_events(conn, [event], lambda _e: [])
    return event


def test_tail_follows_until_ctrl_c(store_url: str, write: Callable[[str], pathlib.Path]) -> None:
    """It prints matching events as JSON lines while they are recorded; SIGINT exits 0."""
    engine = store.create_engine(store_url)
    first = record(engine, 1, "file.deleted")
    path = write(f"store:\n  url: {store_url}\nsinks:\n  - name: console\n    type: log\n")
    args = ["events", "tail", "--json", "-n", "1", "--type", "file.*", "--interval", "0.05"]
    with subprocess.Popen(
        [sys.executable, "-m", "poller", *args, "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    ) as proc:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in proc.stdout or ():
                lines.put(line)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            assert json.loads(lines.get(timeout=30))["id"] == first.id  # -n 1: it is reading
            record(engine, 2, "batch_job.created")  # not a file.* type
            second = record(engine, 3, "file.deleted")
            assert json.loads(lines.get(timeout=30)) == {
                "id": second.id,
                "type": "file.deleted",
                "timestamp": "2026-11-27T10:00:03.000000Z",
                "workspace": "default",
                "data": {"id": "f3"},
            }
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            reader.join(10)
            engine.dispose()
        assert proc.stderr is not None and proc.stderr.read() == ""
    assert lines.empty()
