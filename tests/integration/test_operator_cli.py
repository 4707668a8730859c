"""Operator commands in-process (click's runner) over a real SQLite store."""

from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from poller import store as store_mod
from poller.cli import main
from poller.diff import DiffResult, event_for
from poller.model import Event
from poller.sources import BATCH_JOBS
from poller.store import Ledger, Outbox, PollCommit, Store
from poller.store.outbox import AttemptRecord

T0 = dt.datetime(2026, 11, 27, 12, tzinfo=dt.UTC)


@pytest.fixture
def engine(tmp_path: pathlib.Path) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(f"sqlite:///{tmp_path}/p.db")
    yield engine
    engine.dispose()


def config(tmp_path: pathlib.Path, *sinks: str) -> str:
    """A config file over the test's store naming ``sinks`` (log sinks)."""
    path = tmp_path / "p.yaml"
    text = f"store:\n  url: sqlite:///{tmp_path}/p.db\nsinks:\n"
    text += "".join(f"  - name: {name}\n    type: log\n" for name in sinks)
    path.write_text(text)
    return str(path)


def record_event(engine: sa.Engine, sinks: tuple[str, ...]) -> Event:
    """One batch_job.created event, routed to ``sinks``."""
    r = BATCH_JOBS.to_resource({"id": "job-1", "status": "QUEUED", "created_at": 1, "model": "m"})
    event = event_for(BATCH_JOBS, "batch_job.created", r, workspace="w", now=T0)
    Store(engine, lambda _e: list(sinks)).commit_poll(
        PollCommit("w", "batch_jobs", DiffResult(events=(event,)), T0), active=lambda _r: False
    )
    return event


def test_replay_to_an_unknown_sink_is_refused(engine: sa.Engine, tmp_path: pathlib.Path) -> None:
    """`events replay --sink NAME` for a sink the config lacks exits 2 naming it, queues nothing."""
    event = record_event(engine, ("hook",))
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    (d,) = outbox.due("hook", 10)
    outbox.record([AttemptRecord(d.id, True, "delivered", "delivered", status_code=200)])
    args = ["events", "replay", event.id, "--sink", "hokk", "--config", config(tmp_path, "hook")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "no sink named 'hokk'" in result.stderr
    assert ledger.sink_stats()["hook"].pending == 0


def test_status_table_says_not_configured(engine: sa.Engine, tmp_path: pathlib.Path) -> None:
    """`poller status` names a sink with deliveries in the store but none in the config."""
    record_event(engine, ("hook", "old"))
    result = CliRunner().invoke(main, ["status", "--config", config(tmp_path, "hook")])
    assert result.exit_code == 0, result.output
    assert "sink old: not configured" in result.stdout
    assert "sink hook" not in result.stdout


def delivered_and_replayed_twice(engine: sa.Engine) -> Event:
    """An event for sink hook, delivered and queued again twice: two attempts logged."""
    event = record_event(engine, ("hook",))
    outbox = Outbox(engine)
    ledger = Ledger(engine)
    for _ in range(2):
        (d,) = outbox.due("hook", 10)
        outbox.record([AttemptRecord(d.id, True, "delivered", "delivered", status_code=200)])
        ledger.replay(ids=[event.id])
    return event


def test_events_show_counts_attempts_across_a_replay(
    engine: sa.Engine, tmp_path: pathlib.Path
) -> None:
    """`events show` after a replay gives the count of the attempt rows it prints."""
    event = delivered_and_replayed_twice(engine)
    result = CliRunner().invoke(
        main, ["events", "show", event.id, "--config", config(tmp_path, "hook")]
    )
    assert result.exit_code == 0, result.output
    assert "sink hook: pending, 2 attempt(s)" in result.stdout


def test_events_list_counts_attempts_across_a_replay(
    engine: sa.Engine, tmp_path: pathlib.Path
) -> None:
    """`events list` after a replay counts every attempt, as `events show` does."""
    event = delivered_and_replayed_twice(engine)
    args = ["events", "list", "--json", "--config", config(tmp_path, "hook")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["id"], row["status"], row["attempts"]) == (event.id, "pending", 2)
