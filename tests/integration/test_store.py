"""The store, run against every backend: a real SQLite file and a real PostgreSQL."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
import pathlib
import sqlite3
import stat
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from poller import hints
from poller import store as store_mod
from poller.diff import DiffResult, diff, event_for
from poller.exceptions import SchemaVersionError, StoreError
from poller.model import Event, Resource
from poller.sources import BATCH_JOBS, FILES
from poller.store import Ledger, Outbox, PollCommit, SinkState, SinkStates, Store
from poller.store.outbox import AttemptRecord

from .conftest import rewind, store_now

T0 = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)


def route_all(_event: Event) -> Sequence[str]:
    return ["a", "b"]


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> Store:
    return Store(engine, route_all)


@pytest.fixture
def outbox(engine: sa.Engine) -> Outbox:
    return Outbox(engine)


@pytest.fixture
def ledger(engine: sa.Engine) -> Ledger:
    return Ledger(engine)


@pytest.fixture
def sink_states(engine: sa.Engine) -> SinkStates:
    return SinkStates(engine)


def job(rid: str, status: str = "RUNNING", created: int = 100) -> Resource:
    return BATCH_JOBS.to_resource(
        {"id": rid, "status": status, "created_at": created, "model": "m", "total_requests": 1}
    )


def events_for(*resources: Resource, kind: str = "batch_job.created") -> tuple[Event, ...]:
    return tuple(event_for(BATCH_JOBS, kind, r, workspace="w", now=T0) for r in resources)


def commit(store: Store, result: DiffResult, **kw: object) -> list[Event]:
    return store.commit_poll(
        PollCommit(workspace="w", source="batch_jobs", result=result, now=T0, **kw),  # type: ignore[arg-type]
        active=lambda r: BATCH_JOBS.is_active(r.status),
    )


def test_nested_ids_are_read_by_prefix_and_by_level(store: Store) -> None:
    """ids_under reads one outer item's inner ids, top_ids the outer ones; % and _ are literal."""
    keys = ["lib", "lib/a", "lib/b", "li_/c", "li%", "li%/d", "library/e", "other/f"]
    rows = tuple(Resource(id=k, status=None, created=1, data={}) for k in keys)
    store.commit_poll(
        PollCommit(workspace="w", source="libraries", result=DiffResult(upserts=rows), now=T0),
        active=lambda r: False,
    )
    assert store.ids_under("w", "libraries", "lib/") == {"lib/a", "lib/b"}
    assert store.ids_under("w", "libraries", "li%/") == {"li%/d"}
    assert store.ids_under("w", "libraries", "li_/") == {"li_/c"}
    assert store.top_ids("w", "libraries") == {"lib", "li%"}
    assert store.top_ids("w", "batch_jobs") == set()


def test_poll_commit_writes_snapshot_state_events_and_deliveries(
    store: Store, ledger: Ledger
) -> None:
    """One commit stores the items, the source state, the events and one delivery per sink."""
    r = job("j1")
    recorded = commit(store, DiffResult(upserts=(r,), events=events_for(r)), cursor=100)
    assert [e.type for e in recorded] == ["batch_job.created"]
    assert store.load_resources("w", "batch_jobs") == {"j1": r}
    state = store.source_state("w", "batch_jobs")
    assert state.baselined and state.cursor == 100 and state.last_success_at == T0
    assert set(ledger.sink_stats()) == {"a", "b"}
    assert store.active_ids("w", "batch_jobs") == ["j1"]


def test_events_are_recorded_once_by_id(store: Store, ledger: Ledger) -> None:
    """An event committed again under the same id is skipped, with no second delivery."""
    r = job("j1")
    commit(store, DiffResult(upserts=(r,), events=events_for(r)))
    assert commit(store, DiffResult(upserts=(r,), events=events_for(r))) == []
    assert len(ledger.events()) == 1
    assert ledger.sink_stats()["a"].pending == 1


def test_failed_commit_leaves_nothing(engine: sa.Engine, ledger: Ledger) -> None:
    """A failure inside the poll transaction rolls back the snapshot with the events."""

    def broken(_e: Event) -> Sequence[str]:
        raise RuntimeError("boom")

    store = Store(engine, broken)
    r = job("j1")
    with pytest.raises(RuntimeError):
        commit(store, DiffResult(upserts=(r,), events=events_for(r)))
    assert store.load_resources("w", "batch_jobs") == {}
    assert ledger.events() == []
    assert not store.source_state("w", "batch_jobs").baselined


def test_removals_and_updates(store: Store) -> None:
    """Upserts replace remembered items; removals drop them."""
    commit(store, DiffResult(upserts=(job("j1"), job("j2"))))
    commit(store, DiffResult(upserts=(job("j1", "SUCCESS"),), removals=("j2",)))
    found = store.load_resources("w", "batch_jobs")
    assert list(found) == ["j1"] and found["j1"].status == "SUCCESS"
    assert store.active_ids("w", "batch_jobs") == []
    assert store.counts("w", "batch_jobs") == (1, 0)


def test_load_subset(store: Store) -> None:
    """Loading by ids returns only those remembered among them."""
    commit(store, DiffResult(upserts=tuple(job(f"j{n}") for n in range(1200))))
    subset = store.load_resources("w", "batch_jobs", [f"j{n}" for n in range(0, 1200, 2)] + ["zz"])
    assert len(subset) == 600


def test_poll_error_streak(store: Store) -> None:
    """Failed polls count a streak that a successful commit resets."""
    store.record_poll_error("w", "batch_jobs", "HTTP 500", T0)
    state = store.record_poll_error("w", "batch_jobs", "HTTP 502", T0)
    assert state.error_streak == 2 and state.last_error == "HTTP 502"
    commit(store, DiffResult())
    assert store.source_state("w", "batch_jobs").error_streak == 0


def test_due_keeps_order_per_resource(store: Store, outbox: Outbox) -> None:
    """Only the first pending delivery of each resource is due; others wait behind it."""
    a, b = job("ja"), job("jb")
    commit(store, DiffResult(upserts=(a, b), events=events_for(a, b)))
    commit(store, DiffResult(events=events_for(job("ja", "SUCCESS"), kind="batch_job.succeeded")))
    due = outbox.due("a", 10)
    assert [(d.event.resource_id, d.event.type) for d in due] == [
        ("ja", "batch_job.created"),
        ("jb", "batch_job.created"),
    ]
    first = due[0]
    outbox.record([AttemptRecord(first.id, True, "delivered", "delivered", status_code=200)])
    due = outbox.due("a", 10)
    assert [(d.event.resource_id, d.event.type) for d in due] == [
        ("jb", "batch_job.created"),
        ("ja", "batch_job.succeeded"),
    ]
    assert [d.event.resource_id for d in outbox.due("a", 10, exclude=[due[0].id])] == ["ja"]


def test_failed_delivery_waits_and_dead_ones_do_not_block(store: Store, outbox: Outbox) -> None:
    """A delivery not yet due blocks its resource's later events; a dead one does not."""
    a = job("ja")
    commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    commit(store, DiffResult(events=events_for(job("ja", "SUCCESS"), kind="batch_job.succeeded")))
    first = outbox.due("a", 10)[0]
    outbox.record([AttemptRecord(first.id, False, "rejected", "pending", 300, 400, "HTTP 400")])
    assert outbox.due("a", 10) == []
    due_in = outbox.next_due_in("a")
    assert due_in is not None and 290 < due_in <= 300
    outbox.record([AttemptRecord(first.id, False, "rejected", "dead", 0, 400, "HTTP 400")])
    assert [d.event.type for d in outbox.due("a", 10)] == ["batch_job.succeeded"]


def test_release_and_expire(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """Release makes transient failures due now; expire marks old pending deliveries dead."""
    a, b = job("ja"), job("jb")
    commit(store, DiffResult(upserts=(a, b), events=events_for(a, b)))
    da, db = outbox.due("a", 10)
    outbox.record(
        [
            AttemptRecord(da.id, False, "transient", "pending", 3600, 503),
            AttemptRecord(db.id, False, "rejected", "pending", 3600, 400),
        ]
    )
    assert outbox.release("a") == 1
    assert [d.id for d in outbox.due("a", 10)] == [da.id]
    assert outbox.expire("a", max_age=3600) == 0
    rewind(store.engine, "created_at", 3601)
    assert outbox.expire("a", max_age=3600) == 2
    assert ledger.sink_stats()["a"].dead == 2


def test_probe_candidate_prefers_due(store: Store, outbox: Outbox) -> None:
    """The probe is the oldest due head, else the oldest head."""
    a, b = job("ja"), job("jb")
    commit(store, DiffResult(upserts=(a, b), events=events_for(a, b)))
    da, db = outbox.due("a", 10)
    outbox.record([AttemptRecord(da.id, False, "transient", "pending", 3600)])
    probe = outbox.probe_candidate("a")
    assert probe is not None and probe.id == db.id


def test_replay_requeues_delivered(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """Replay makes delivered deliveries pending again under the same event id."""
    a = job("ja")
    (event,) = commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    for d in outbox.due("a", 10) + outbox.due("b", 10):
        outbox.record([AttemptRecord(d.id, True, "delivered", "delivered", status_code=200)])
    assert ledger.replay(ids=[event.id], sink="a") == 1
    (again,) = outbox.due("a", 10)
    assert again.event.id == event.id and again.attempts == 0
    assert outbox.due("b", 10) == []


def test_event_detail_has_attempt_log(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """events show returns the envelope and every attempt."""
    a = job("ja")
    (event,) = commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    (d,) = outbox.due("a", 10)
    outbox.record([AttemptRecord(d.id, False, "transient", "pending", 0, 500, "HTTP 500", 3.5)])
    outbox.record([AttemptRecord(d.id, True, "delivered", "delivered", 0, 200, None, 1.0)])
    detail = ledger.event_detail(event.id)
    assert detail is not None and detail["event"]["id"] == event.id
    log = {x["sink"]: x["log"] for x in detail["deliveries"]}["a"]
    assert [x["status_code"] for x in log] == [500, 200]
    assert ledger.event_detail("evt_missing") is None


def test_attempts_are_counted_across_a_replay(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """After a replay, events show and events list count every attempt, not those since it."""
    a = job("ja")
    (event,) = commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    (d,) = outbox.due("a", 10)
    outbox.record([AttemptRecord(d.id, True, "delivered", "delivered", status_code=200)])
    assert ledger.replay(ids=[event.id], sink="a") == 1
    (again,) = outbox.due("a", 10)
    outbox.record([AttemptRecord(again.id, True, "delivered", "delivered", status_code=200)])
    detail = ledger.event_detail(event.id)
    assert detail is not None
    (delivery,) = [x for x in detail["deliveries"] if x["sink"] == "a"]
    assert delivery["attempts"] == len(delivery["log"]) == 2
    (listed,) = ledger.list_deliveries(sink="a")
    assert (listed["status"], listed["attempts"]) == ("delivered", 2)


def test_list_deliveries_filters(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """events list filters by status (failed = pending with attempts), sink and type glob."""
    a = job("ja")
    commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    (d,) = outbox.due("a", 10)
    outbox.record([AttemptRecord(d.id, False, "transient", "pending", status_code=500)])
    (failed,) = ledger.list_deliveries(status="failed")
    assert (failed["sink"], failed["status"], failed["failing"], failed["attempts"]) == (
        "a",
        "pending",
        True,
        1,
    )
    assert len(ledger.list_deliveries(status="pending", sink="b")) == 1
    assert len(ledger.list_deliveries(event_type="batch_job.*")) == 2
    assert ledger.list_deliveries(event_type="file.*") == []


def test_sink_state_round_trip(sink_states: SinkStates) -> None:
    """Sink state (disabled, circuit) survives in the store."""
    assert sink_states.get("a") == SinkState(name="a")
    state = SinkState("a", enabled=False, disabled_reason="410", failing_since=T0, next_probe_at=T0)
    sink_states.save(state)
    assert sink_states.get("a") == state


def test_enqueue_uses_the_same_outbox(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """Events from outside polling enter the same outbox, once by id."""
    event = events_for(job("x"))[0]
    assert store.enqueue([event, event], T0) == [event]
    assert store.enqueue([event], T0) == []
    assert ledger.sink_stats()["a"].pending == 1


def test_schema_version_recorded_and_newer_refused(engine: sa.Engine, store_url: str) -> None:
    """The schema version is recorded; a newer one is refused with a clear error."""
    with engine.begin() as conn:
        assert (
            conn.execute(sa.text("select value from meta where key='schema_version'")).scalar()
            == "2"
        )
        conn.execute(sa.text("update meta set value='99' where key='schema_version'"))
    with pytest.raises(SchemaVersionError, match="newer"):
        store_mod.create_engine(store_url)


def test_sqlite_file_is_private(tmp_path: os.PathLike[str]) -> None:
    """The SQLite file is created readable by its owner only, in WAL mode."""
    path = f"{tmp_path}/poller.db"
    engine = store_mod.create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(sa.text("pragma journal_mode")).scalar() == "wal"
    engine.dispose()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_sqlite_waits_for_wal_while_another_connection_writes(tmp_path: pathlib.Path) -> None:
    """Opening a new store while another connection writes to it waits instead of failing."""
    path = tmp_path / "poller.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("create table t (x integer)")
    writer.execute("begin")
    writer.execute("insert into t values (1)")  # a reserved lock: WAL cannot be switched on now
    engine = store_mod.open_engine(f"sqlite:///{path}")
    tries: list[str] = []
    tried_twice = threading.Event()

    def trace(statement: str) -> None:
        if "journal_mode" in statement:
            tries.append(statement)
            if len(tries) >= 2:
                tried_twice.set()

    sa.event.listen(
        engine,
        "connect",
        lambda dbapi_connection, _record: dbapi_connection.set_trace_callback(trace),
        insert=True,
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        opened = pool.submit(lambda: engine.connect().close())
        either: list[concurrent.futures.Future[Any]] = [opened, pool.submit(tried_twice.wait, 30)]
        concurrent.futures.wait(
            either,
            return_when=concurrent.futures.FIRST_COMPLETED,
        )
        writer.execute("commit")
        opened.result(timeout=60)
    with engine.connect() as conn:
        assert conn.execute(sa.text("pragma journal_mode")).scalar() == "wal"
    engine.dispose()
    writer.close()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "unsupported store URL"),
        ("sqlite:///:memory:", "not a file"),
        ("sqlite:////proc/poller.db", "cannot create"),
        ("sqlite:////proc/nope/poller.db", "the directory /proc/nope does not exist"),
    ],
)
def test_bad_store_urls(url: str, message: str) -> None:
    """Unsupported, in-memory, unwritable and directory-less stores are refused with one line."""
    with pytest.raises(StoreError, match=message):
        store_mod.create_engine(url)


def test_missing_store_directory_is_named_not_created(tmp_path: pathlib.Path) -> None:
    """A SQLite store in a directory that does not exist is refused; nothing is created."""
    missing = tmp_path / "state"
    with pytest.raises(StoreError) as info:
        store_mod.create_engine(f"sqlite:///{missing}/poller.db")
    assert str(info.value) == (
        f"store.url: the directory {missing} does not exist; create it "
        f"(install -d -m 0700 {missing}) or change store.url"
    )
    assert not missing.exists()


def test_password_is_masked() -> None:
    """A store URL's password never appears in messages."""
    assert "hunter2" not in store_mod.safe_url("postgresql://u:hunter2@h/db")


def test_file_resources_keep_payload_fields(store: Store) -> None:
    """What the snapshot keeps is enough to build a deletion payload later."""
    f = FILES.to_resource(
        {
            "id": "f1",
            "bytes": 5,
            "filename": "a",
            "purpose": "batch",
            "created_at": 1,
            "num_lines": 3,
            "mimetype": "x",
        }
    )
    store.commit_poll(
        PollCommit("w", "files", DiffResult(upserts=(f,)), T0), active=lambda r: False
    )
    assert store.load_resources("w", "files")["f1"].data == {
        "id": "f1",
        "bytes": 5,
        "filename": "a",
        "purpose": "batch",
        "created_at": 1,
    }


def test_delivered_time_is_recorded(store: Store, outbox: Outbox, ledger: Ledger) -> None:
    """A delivered attempt stamps delivered_at (an aware UTC time, the store's); a failed
    one does not."""
    a = job("ja")
    (event,) = commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    da = outbox.due("a", 10)[0]
    db = outbox.due("b", 10)[0]
    before = store_now(store.engine)
    outbox.record(
        [
            AttemptRecord(da.id, True, "delivered", "delivered", status_code=200),
            AttemptRecord(db.id, False, "transient", "pending", status_code=500),
        ]
    )
    after = store_now(store.engine)
    detail = ledger.event_detail(event.id)
    assert detail is not None
    stamps = {x["sink"]: x["delivered_at"] for x in detail["deliveries"]}
    assert stamps["b"] is None
    assert stamps["a"].tzinfo == dt.UTC and before <= stamps["a"] <= after


@pytest.mark.foreign_events  # a type with another character where the glob has `_`
def test_type_filter_takes_underscore_literally(store: Store, ledger: Ledger) -> None:
    """`--type batch_job.*` matches batch_job.created, not a type with another character there."""
    a = job("ja")
    (real,) = events_for(a)
    other = Event("evt_other", "batchXjob.created", "w", "ja", T0, {})
    store.enqueue([real, other], T0)
    assert {d["id"] for d in ledger.list_deliveries(event_type="batch_job.*")} == {real.id}
    assert {d["id"] for d in ledger.list_deliveries(event_type="batch*")} == {real.id, other.id}


def test_sinks_enable_releases_what_waited(tmp_path: os.PathLike[str]) -> None:
    """`poller sinks enable` makes deliveries that waited on the sink's failure due at once."""
    from click.testing import CliRunner

    from poller.cli import main

    url = f"sqlite:///{tmp_path}/p.db"
    engine = store_mod.create_engine(url)
    store, outbox = Store(engine, lambda _e: ["hook"]), Outbox(engine)
    sink_states = SinkStates(engine)
    a = job("ja")
    commit(store, DiffResult(upserts=(a,), events=events_for(a)))
    (d,) = outbox.due("hook", 10)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    outbox.record([AttemptRecord(d.id, False, "transient", "pending", 7200, 503)])
    sink_states.save(SinkState("hook", failing_since=T0, next_probe_at=later))
    config = f"{tmp_path}/p.yaml"
    with open(config, "w") as fh:
        fh.write(f"store:\n  url: {url}\nsinks:\n  - name: hook\n    type: log\n")
    result = CliRunner().invoke(main, ["sinks", "enable", "hook", "--config", config])
    assert result.exit_code == 0, result.output
    assert "1 waiting delivery due now" in result.output
    assert [x.id for x in outbox.due("hook", 10)] == [d.id]
    assert not sink_states.get("hook").circuit_open
    engine.dispose()


def test_a_refusing_fence_writes_nothing_of_the_poll(store: Store) -> None:
    """The fence runs first in the poll's transaction; when it refuses, nothing is written."""
    from poller.exceptions import LeaseLost

    calls: list[str] = []

    def refuse(conn: sa.Connection) -> None:
        calls.append("fence")
        raise LeaseLost("workspace w: the lease passed to b")

    j = job("j1")
    result = DiffResult(upserts=(j,), events=events_for(j))
    with pytest.raises(LeaseLost):
        store.commit_poll(
            PollCommit(workspace="w", source="batch_jobs", result=result, now=T0),
            active=lambda r: BATCH_JOBS.is_active(r.status),
            fence=refuse,
        )
    assert calls == ["fence"]
    assert store.ids("w", "batch_jobs") == set()
    assert not store.source_state("w", "batch_jobs").baselined
    passed: list[sa.Connection] = []
    store.commit_poll(
        PollCommit(workspace="w", source="batch_jobs", result=result, now=T0),
        active=lambda r: BATCH_JOBS.is_active(r.status),
        fence=passed.append,
    )
    # first in the transaction and last before its commit, on the poll's own connection
    assert len(passed) == 2 and passed[0] is passed[1]
    assert store.ids("w", "batch_jobs") == {"j1"}


def test_a_fence_that_refuses_at_the_commit_writes_nothing_of_the_poll(store: Store) -> None:
    """A lease lost while the poll's transaction was open (the fence passes first, refuses
    last) leaves nothing of the poll: no row, no event, no state."""
    from poller.exceptions import LeaseLost

    checks: list[str] = []

    def lost_meanwhile(conn: sa.Connection) -> None:
        checks.append("fence")
        if len(checks) > 1:
            raise LeaseLost("workspace w: the lease changed hands since this poll began")

    j = job("j1")
    result = DiffResult(upserts=(j,), events=events_for(j))
    with pytest.raises(LeaseLost):
        store.commit_poll(
            PollCommit(workspace="w", source="batch_jobs", result=result, now=T0),
            active=lambda r: BATCH_JOBS.is_active(r.status),
            fence=lost_meanwhile,
        )
    assert checks == ["fence", "fence"]
    assert store.ids("w", "batch_jobs") == set()
    assert not store.source_state("w", "batch_jobs").baselined
    with store.engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from events")) == 0


def hint_of(resource: Resource, kind: str = "created") -> hints.Hint:
    return hints.Hint("w", BATCH_JOBS, kind, resource.id, T0, resource)


def test_a_hint_writes_its_row_and_event_once_and_leaves_the_state(
    store: Store, ledger: Ledger
) -> None:
    """A created job: snapshot row (active) and event together; again, nothing new; no baseline."""
    hint = hint_of(job("j1", "QUEUED"))
    first = hints.record(store, hint)
    again = hints.record(store, hint)
    assert [e.type for e in first] == ["batch_job.created"] and again == []
    assert [e.id for e in ledger.events()] == [first[0].id]
    assert store.active_ids("w", "batch_jobs") == ["j1"]
    assert store.load_resources("w", "batch_jobs")["j1"].status == "QUEUED"
    assert not store.source_state("w", "batch_jobs").baselined


def test_a_hint_then_a_poll_of_the_same_job_announces_it_once(store: Store, ledger: Ledger) -> None:
    """The poll after a hint sees the job in the snapshot: no second event."""
    hinted = hints.record(store, hint_of(job("j1", "QUEUED")))
    listing = [job("j1", "RUNNING")]
    before = store.load_resources("w", "batch_jobs", ["j1"])
    polled = commit(store, diff(BATCH_JOBS, before, listing, workspace="w", now=T0))
    assert len(hinted) == 1 and polled == []
    assert len(ledger.events()) == 1


def test_a_failed_hint_leaves_neither_row_nor_event(engine: sa.Engine, ledger: Ledger) -> None:
    """A failure after the snapshot row was written rolls the row back with the event."""

    def broken(_e: Event) -> Sequence[str]:
        raise RuntimeError("boom")

    store = Store(engine, broken)
    with pytest.raises(RuntimeError):
        hints.record(store, hint_of(job("j1", "QUEUED")))
    assert store.load_resources("w", "batch_jobs") == {}
    assert ledger.events() == []


def test_a_cancel_hint_moves_a_known_job_out_of_the_active_set(
    store: Store, outbox: Outbox
) -> None:
    """A job the snapshot holds as RUNNING, cancelled: its event, and no longer active."""
    commit(store, DiffResult(upserts=(job("j1", "RUNNING"),)))
    recorded = hints.record(store, hint_of(job("j1", "CANCELLED"), "changed"))
    assert [e.type for e in recorded] == ["batch_job.cancelled"]
    assert store.active_ids("w", "batch_jobs") == []
