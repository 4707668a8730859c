"""The store side of `poller events tail`: events by seq, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import pathlib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from poller import catalog, store, tail
from poller.cli import main
from poller.model import Event
from poller.store.feed import Feed, Notices
from poller.store.intake import add_events

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def event(n: int, event_type: str = "file.deleted", workspace: str = "default") -> Event:
    """Event ``n`` of a type, its payload filled from an API object as the catalog does."""
    api_object = {"id": f"f{n}", "status": "QUEUED", "model": "mistral-small-latest"}
    return Event(
        catalog.event_id(workspace, event_type, f"f{n}"),
        event_type,
        workspace,
        f"f{n}",
        T0 + dt.timedelta(minutes=n),
        catalog.payload(event_type, api_object),
    )


def record(engine: sa.Engine, *events: Event) -> None:
    with engine.begin() as conn:
        add_events(conn, events, lambda _e: [])


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = store.create_engine(store_url)
    yield engine
    engine.dispose()


def test_start_is_now_by_default(engine: sa.Engine) -> None:
    """Without --since or -n, the tail starts after the newest recorded event."""
    feed = Feed(engine)
    assert feed.start() == 0
    record(engine, event(1), event(2))
    start = feed.start()
    assert feed.after(start) == []
    record(engine, event(3))
    assert [e.resource_id for _, e in feed.after(start)] == ["f3"]


def test_start_with_the_last_n_matching(engine: sa.Engine) -> None:
    """-n N starts before the last N events matching --type and --workspace."""
    record(engine, event(1), event(2, "batch_job.created"), event(3), event(4, workspace="prod"))
    feed = Feed(engine)
    shown = feed.after(feed.start(last=2, event_type="file.*", workspace="default"))
    matches = tail.matcher("file.*", "default")
    assert [e.resource_id for _, e in shown if matches(e)] == ["f1", "f3"]


def test_start_since_a_time(engine: sa.Engine) -> None:
    """--since starts with the first event recorded at or after that time."""
    record(engine, event(1), event(2), event(3))
    feed = Feed(engine)
    since = feed.start(since=T0 + dt.timedelta(minutes=2))
    assert [e.resource_id for _, e in feed.after(since)] == ["f2", "f3"]
    assert feed.after(feed.start(since=T0 + dt.timedelta(hours=1))) == []


class Follower:
    """tail.follow() in a thread, collecting the resource ids it emits."""

    def __init__(self, feed: Feed, glob: str | None, **options: Any) -> None:
        self.seen: list[str] = []
        self.arrived = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=tail.follow,
            args=(feed, feed.start()),
            kwargs={
                "stop": self.stop,
                "emit": self.emit,
                "matches": tail.matcher(glob, None),
                "on_error": lambda _p: None,
                **options,
            },
        )
        self.thread.start()

    def emit(self, e: Event) -> None:
        with self.arrived:
            self.seen.append(e.resource_id)
            self.arrived.notify_all()

    def wait_for(self, count: int, timeout: float) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.seen) >= count, timeout=timeout)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()


def test_follow_emits_in_seq_order(engine: sa.Engine) -> None:
    """follow() emits what is recorded after its start, in order, until stopped."""
    record(engine, event(1))
    follower = Follower(Feed(engine), "file.*", interval=0.05)
    try:
        record(engine, event(2), event(3, "batch_job.created"))
        record(engine, event(4))
        assert follower.wait_for(2, timeout=20)
    finally:
        follower.close()
    assert follower.seen == ["f2", "f4"]


def test_a_late_commit_of_a_lower_seq_is_still_shown(postgres_url: str) -> None:
    """PostgreSQL: a transaction that took a lower seq and commits later is not skipped."""
    engine = store.create_engine(postgres_url)
    try:
        feed = Feed(engine)
        cursor = tail.Cursor(feed.start())
        with engine.connect() as slow:
            transaction = slow.begin()
            add_events(slow, [event(1)], lambda _e: [])  # takes seq 1, not committed
            record(engine, event(2))  # seq 2, committed first
            rows = feed.after(cursor.seq, also=tuple(cursor.missing))
            cursor, new = tail.advance(cursor, [s for s, _ in rows], 0.0, 10.0)
            assert [e.resource_id for s, e in rows if s in new] == ["f2"]
            transaction.commit()
        rows = feed.after(cursor.seq, also=tuple(cursor.missing))
        cursor, new = tail.advance(cursor, [s for s, _ in rows], 1.0, 10.0)
        assert [e.resource_id for s, e in rows if s in new] == ["f1"]
        assert cursor.missing == {}
    finally:
        engine.dispose()


class CountingFeed(Feed):
    """A Feed that says when it was first read."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.read = threading.Event()

    def after(self, seq: int, **kwargs: Any) -> list[tuple[int, Event]]:
        rows = super().after(seq, **kwargs)
        self.read.set()
        return rows


def test_notices_wake_the_tail_before_its_interval(postgres_url: str) -> None:
    """PostgreSQL: the NOTIFY of committed deliveries wakes a tail at once, and stop ends it."""
    engine = store.create_engine(postgres_url)
    notices = Notices(engine.url)
    feed = CountingFeed(engine)
    # without the notice, the next look would be ten minutes away
    follower = Follower(feed, None, interval=600.0, notices=notices)
    try:
        assert feed.read.wait(20)  # it has looked once and now waits
        with engine.begin() as conn:
            add_events(conn, [event(1)], lambda _e: ["hook"])
        assert follower.wait_for(1, timeout=60)
    finally:
        follower.close()
        notices.close()
        engine.dispose()
    assert follower.seen == ["f1"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            ["--type", "batch.*"],
            "poller: --type 'batch.*' matches no event type; known types: batch_job.created,",
        ),
        (
            ["--workspace", "prod"],
            "poller: --workspace 'prod' is not a workspace of the config; its workspaces: default",
        ),
    ],
)
def test_a_filter_that_can_match_nothing_is_refused(
    tmp_path: pathlib.Path, option: list[str], message: str
) -> None:
    """A --type glob no event type matches, or an unknown workspace: one line, exit 2."""
    path = tmp_path / "poller.yaml"
    path.write_text(f"store:\n  url: sqlite:///{tmp_path}/p.db\n")
    store.create_engine(f"sqlite:///{tmp_path}/p.db").dispose()
    result = CliRunner().invoke(main, ["events", "tail", "--config", str(path), *option])
    assert result.exit_code == 2
    assert result.output.startswith(message) and result.output.count("\n") == 1
