"""Delivery claims on both backends: concurrent claimers, lapsed claims, compare-and-set,
and every time of the outbox kept by the store's clock, never this process's."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime as dt
import threading
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from freezegun import freeze_time

from poller import store as store_mod
from poller import utils
from poller.diff import event_for
from poller.model import Event
from poller.sources import BATCH_JOBS
from poller.store import Ledger, Outbox, Store
from poller.store.outbox import AttemptRecord
from poller.store.rows import DELIVERIES

from .conftest import rewind, store_now

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


@pytest.fixture
def outbox(engine: sa.Engine) -> Outbox:
    return Outbox(engine)


@pytest.fixture
def ledger(engine: sa.Engine) -> Ledger:
    return Ledger(engine)


def enqueue(engine: sa.Engine, resources: Sequence[str], per_resource: int = 1) -> list[Event]:
    """Record ``per_resource`` events for each resource id, all routed to the sink ``hook``."""
    created = {"status": "QUEUED", "created_at": 1, "model": "m"}
    succeeded = {"status": "SUCCESS", "created_at": 1, "output_file": "o", "total_requests": 1}
    kinds = [("batch_job.created", created), ("batch_job.succeeded", succeeded)]
    events = [
        event_for(
            BATCH_JOBS, kind, BATCH_JOBS.to_resource({"id": rid, **fields}), workspace="w", now=T0
        )
        for kind, fields in kinds[:per_resource]
        for rid in resources
    ]
    Store(engine, lambda _e: ["hook"]).enqueue(events, T0)
    return events


def done(delivery_id: int, claim: str | None, *, ok: bool = True) -> AttemptRecord:
    """A finished attempt under ``claim``: delivered, or failed and due again at once."""
    return AttemptRecord(
        delivery_id,
        ok,
        "delivered" if ok else "transient",
        "delivered" if ok else "pending",
        status_code=200 if ok else 503,
        claim=claim,
    )


def test_200_concurrent_claims_never_claim_one_delivery_twice(
    store_url: str, engine: sa.Engine
) -> None:
    """Eight claimers on their own connections, claiming 200 deliveries: each is taken once."""
    enqueue(engine, [f"job-{n:03d}" for n in range(200)])
    engines = [store_mod.create_engine(store_url) for _ in range(8)]
    start = threading.Barrier(len(engines))

    def claimer(own: sa.Engine) -> list[int]:
        outbox, taken = Outbox(own), list[int]()
        start.wait()
        while batch := outbox.claim("hook", 7, 30):
            taken.extend(d.id for d in batch)
        return taken

    try:
        with concurrent.futures.ThreadPoolExecutor(len(engines)) as pool:
            results = list(pool.map(claimer, engines))
    finally:
        for own in engines:
            own.dispose()
    taken = [i for result in results for i in result]
    assert len(taken) == 200
    assert len(set(taken)) == 200
    assert sum(1 for result in results if result) > 1  # they really did share the work


def test_claimed_deliveries_are_not_offered_to_others(outbox: Outbox, engine: sa.Engine) -> None:
    """What one process claimed, another neither claims nor sees as due, until released."""
    enqueue(engine, ["a", "b"])
    mine = outbox.claim("hook", 10, 30)
    assert len(mine) == 2 and mine[0].claim == mine[1].claim is not None
    assert outbox.claim("hook", 10, 30) == []
    assert outbox.due("hook", 10) == []
    outbox.unclaim([(mine[0].id, mine[0].claim or "")])
    assert [d.id for d in outbox.claim("hook", 10, 30)] == [mine[0].id]


def test_a_dead_claimers_deliveries_are_claimed_again_after_the_deadline(
    outbox: Outbox, engine: sa.Engine
) -> None:
    """A claim nobody writes back lapses at its deadline; then another process takes it."""
    enqueue(engine, ["a"])
    (first,) = outbox.claim("hook", 10, 30)
    assert outbox.claim("hook", 10, 30) == []
    due_in = outbox.next_due_in("hook")
    assert due_in is not None and 25 < due_in <= 30
    rewind(engine, "claimed_until", 31)
    due_in = outbox.next_due_in("hook")
    assert due_in is not None and due_in <= 0
    (again,) = outbox.claim("hook", 10, 30)
    assert again.id == first.id and again.claim != first.claim


def test_renewing_keeps_a_claim_past_its_first_deadline(outbox: Outbox, engine: sa.Engine) -> None:
    """A live holder renews its claims: nobody else takes them at the first deadline."""
    enqueue(engine, ["a"])
    (mine,) = outbox.claim("hook", 10, 30)
    rewind(engine, "claimed_until", 20)
    assert outbox.renew({mine.claim or ""}, 30) == [mine.id]
    rewind(engine, "claimed_until", 20)
    assert outbox.claim("hook", 10, 30) == []


def test_renewing_a_claim_another_took_gives_nothing(outbox: Outbox, engine: sa.Engine) -> None:
    """Renewal names the rows still held: one another process took once it lapsed is not."""
    enqueue(engine, ["a", "b"])
    mine = outbox.claim("hook", 10, 30)
    rewind(engine, "claimed_until", 31)
    (taken,) = Outbox(engine).claim("hook", 1, 30)
    kept = [d.id for d in mine if d.id != taken.id]
    assert outbox.renew({mine[0].claim or ""}, 30) == kept


def test_a_stale_claims_write_is_refused(outbox: Outbox, ledger: Ledger, engine: sa.Engine) -> None:
    """The holder whose claim lapsed and was taken writes nothing; the new holder's write counts."""
    enqueue(engine, ["a"])
    (stale,) = outbox.claim("hook", 10, 30)
    rewind(engine, "claimed_until", 31)
    (fresh,) = outbox.claim("hook", 10, 30)
    assert outbox.record([done(fresh.id, fresh.claim)]) == []
    assert outbox.record([done(stale.id, stale.claim, ok=False)]) == [stale.id]
    (row,) = ledger.list_deliveries()
    assert row["status"] == "delivered" and row["attempts"] == 1
    detail = ledger.event_detail(row["id"])
    assert detail is not None and [a["ok"] for a in detail["deliveries"][0]["log"]] == [True]


def test_a_delivered_row_never_goes_back_to_pending(
    outbox: Outbox, ledger: Ledger, engine: sa.Engine
) -> None:
    """A failure written late under an old claim cannot undo a delivery."""
    enqueue(engine, ["a"])
    (first,) = outbox.claim("hook", 10, 30)
    assert outbox.record([done(first.id, first.claim)]) == []
    assert outbox.record([done(first.id, first.claim, ok=False)]) == [first.id]
    assert outbox.record([done(first.id, None, ok=False)]) == [first.id]
    assert ledger.sink_stats()["hook"].delivered == 1
    rewind(engine, "next_attempt_at", 99)
    assert outbox.claim("hook", 10, 30) == []


def test_replay_clears_a_claim_in_flight(outbox: Outbox, ledger: Ledger, engine: sa.Engine) -> None:
    """A replay of a delivery being sent wins: the attempt in flight writes nothing back."""
    (event,) = enqueue(engine, ["a"])
    (inflight,) = outbox.claim("hook", 10, 30)
    assert ledger.replay(ids=[event.id]) == 1
    assert outbox.record([done(inflight.id, inflight.claim)]) == [inflight.id]
    (again,) = outbox.claim("hook", 10, 30)
    assert again.id == inflight.id and again.attempts == 0


def test_one_delivery_in_flight_per_resource_across_claimers(
    store_url: str, outbox: Outbox, engine: sa.Engine
) -> None:
    """A resource's next event cannot be claimed while its earlier one is held or pending."""
    first, second = enqueue(engine, ["a"], per_resource=2)
    other = store_mod.create_engine(store_url)
    try:
        (head,) = outbox.claim("hook", 10, 30)
        assert head.event.id == first.id
        assert Outbox(other).claim("hook", 10, 30) == []
        assert outbox.record([done(head.id, head.claim, ok=False)]) == []  # failed: still first
        (retry,) = Outbox(other).claim("hook", 10, 30)
        assert retry.event.id == first.id
        assert Outbox(other).record([done(retry.id, retry.claim)]) == []
        (nxt,) = outbox.claim("hook", 10, 30)
        assert nxt.event.id == second.id
    finally:
        other.dispose()


def test_expiry_spares_a_delivery_being_sent(
    outbox: Outbox, ledger: Ledger, engine: sa.Engine
) -> None:
    """Giving up on old deliveries leaves the one a live claim holds; its result decides."""
    enqueue(engine, ["a", "b"])
    (held,) = outbox.claim("hook", 1, 30)
    rewind(engine, "created_at", 120)
    assert outbox.expire("hook", max_age=60) == 1
    assert outbox.record([done(held.id, held.claim)]) == []
    stats = ledger.sink_stats()["hook"]
    assert (stats.delivered, stats.dead) == (1, 1)


def test_expiry_counts_age_by_the_stores_clock(outbox: Outbox, engine: sa.Engine) -> None:
    """max_age runs on the store's clock: a delivery older than it by that clock is dead,
    a younger one stays."""
    _old, young = enqueue(engine, ["a", "b"])
    rewind(engine, "created_at", 3601, where=DELIVERIES.c.event_seq == 1)
    assert outbox.expire("hook", max_age=3600) == 1
    assert {d.event.id for d in outbox.due("hook", 10)} == {young.id}


@pytest.mark.parametrize("skew", [-86400.0, 86400.0])
def test_claims_are_timed_by_the_stores_clock(
    outbox: Outbox, engine: sa.Engine, skew: float
) -> None:
    """Deliveries are created, due and claimed at the store's now — PostgreSQL's, or on
    SQLite the one host's — whatever this process's clock says; a claim lasts its timeout
    from there, and nothing is old by a process's clock."""
    with freeze_time(utils.utcnow() + dt.timedelta(seconds=skew)):
        enqueue(engine, ["a", "b"])
        now = store_now(engine)
        mine = outbox.claim("hook", 1, 30)
        assert outbox.expire("hook", max_age=3600) == 0
    (claimed,) = mine
    assert claimed.claimed_at is not None and abs((claimed.claimed_at - now).total_seconds()) < 5
    assert abs((claimed.created_at - now).total_seconds()) < 5
    assert claimed.next_attempt_at == claimed.created_at
    with engine.connect() as conn:
        until = conn.scalar(
            sa.select(DELIVERIES.c.claimed_until).where(DELIVERIES.c.id == claimed.id)
        )
    assert until == claimed.claimed_at + dt.timedelta(seconds=30)
    if engine.dialect.name == "postgresql":
        # this process, on its own clock again, finds the claim live and the other one due
        assert [d.event.id for d in outbox.claim("hook", 10, 30)] != [claimed.event.id]
        assert outbox.claim("hook", 10, 30) == []


def test_a_retry_is_due_its_delay_after_the_write_by_the_stores_clock(
    outbox: Outbox, engine: sa.Engine
) -> None:
    """A failed attempt's retry is due ``retry_in`` seconds after the write, store's time."""
    enqueue(engine, ["a"])
    (first,) = outbox.claim("hook", 1, 30)
    before = store_now(engine)
    failed = dataclasses.replace(done(first.id, first.claim, ok=False), retry_in=600)
    assert outbox.record([failed]) == []
    after = store_now(engine)
    due_in = outbox.next_due_in("hook")
    assert due_in is not None and 590 < due_in <= 600
    with engine.connect() as conn:
        row = conn.execute(sa.select(DELIVERIES).where(DELIVERIES.c.id == first.id)).one()
    assert before <= row.last_attempt_at <= after
    waits = row.next_attempt_at - row.last_attempt_at
    assert abs(waits.total_seconds() - 600) < 1
    assert outbox.claim("hook", 1, 30) == []
    assert outbox.release("hook") == 1
    assert [d.id for d in outbox.claim("hook", 1, 30)] == [first.id]
