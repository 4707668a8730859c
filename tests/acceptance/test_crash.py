"""kill -9 of a dispatcher in the middle of a high-rate run, on both backends.

Each dispatcher is a process of its own (``dispatch``: one sink worker, concurrency 8, a
2 s claim timeout) delivering a full outbox as fast as it goes to a receiver in this
process, which records every request and the process that sent it. One is killed, the next
starts at once on the same store and takes what the dead one held once its claims lapse.
Every wait is on a condition: the receiver's requests, the store's rows.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import pathlib
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa
from standardwebhooks.webhooks import Webhook

from poller import store as store_mod
from poller.diff import DiffResult, event_for
from poller.sources import BATCH_JOBS
from poller.store import PollCommit, Store
from poller.store.rows import DELIVERED, DELIVERIES, EVENTS, PENDING

from . import dispatch
from .conftest import ROOT, env, wait_until
from .recorder import Recorder, Request

COUNT = 3000
KILLS = (500, 1500)
"""A dispatcher is killed once the receiver has had this many requests in all."""
UNRECORDED = dispatch.CONCURRENCY + dispatch.BATCH_SIZE + dispatch.WINDOW
"""The most deliveries a killed worker may have sent without their results written, which
are all it sends again: ``concurrency`` on the wire, up to ``batch_size`` finished ones
gathered for the next write, and a ``window`` more claimed, sent and finished while that
write was under way. The last holds while one write takes less time than sending a window
does: nothing in the worker stops it sending on behind a slower write. Whatever the count,
what is sent again is what the dead worker still held claimed, which is checked exactly."""


def fill(engine: sa.Engine, count: int) -> set[str]:
    """``count`` events of as many jobs, each a pending delivery to the sink ``hook``."""
    now = dt.datetime.now(dt.UTC)
    fields = {"status": "SUCCESS", "model": "m", "output_file": "o", "total_requests": 1}
    events = tuple(
        event_for(
            BATCH_JOBS,
            "batch_job.succeeded",
            BATCH_JOBS.to_resource({"id": f"job-{n:05d}", "created_at": n, **fields}),
            workspace="w",
            now=now,
        )
        for n in range(count)
    )
    Store(engine, lambda _e: ["hook"]).commit_poll(
        PollCommit("w", "batch_jobs", DiffResult(events=events), now), active=lambda _r: False
    )
    return {e.id for e in events}


def dispatcher(store_url: str, hook: str, name: str, log: pathlib.Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.acceptance.dispatch", store_url, hook, name],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env(),
            cwd=ROOT,
        )


def statuses(engine: sa.Engine) -> collections.Counter[str]:
    d = DELIVERIES
    with engine.connect() as conn:
        rows = conn.execute(sa.select(d.c.status, sa.func.count()).group_by(d.c.status))
        return collections.Counter({status: int(n) for status, n in rows})


def sent_by(requests: list[Request]) -> dict[str, list[str]]:
    """Process name → the ids it sent, in arrival order."""
    sent: dict[str, list[str]] = collections.defaultdict(list)
    for r in requests:
        sent[r.headers["x-process"]].append(r.headers["webhook-id"])
    return sent


def held_at_kill(engine: sa.Engine) -> set[str]:
    """The event ids of the deliveries still claimed: with no dispatcher running, those the
    one just killed had claimed and not written back."""
    d, e = DELIVERIES, EVENTS
    query = (
        sa.select(e.c.id)
        .join(d, d.c.event_seq == e.c.seq)
        .where(d.c.status == PENDING, d.c.claim_token.is_not(None))
    )
    with engine.connect() as conn:
        return set(conn.scalars(query))


@pytest.mark.slow
def test_kill_9_during_a_high_rate_run_loses_nothing_and_resends_only_what_was_in_flight(
    store_url: str, tmp_path: pathlib.Path
) -> None:
    """Two dispatchers killed -9 in turn mid-run, a third finishing: every event arrives and
    every delivery ends delivered; a killed one's delivery is sent again only if it still
    held it claimed at the kill (at most ``UNRECORDED``), under the same id, the same body."""
    engine = store_mod.create_engine(store_url)
    ids = fill(engine, COUNT)
    names = [f"p{n}" for n in range(len(KILLS) + 1)]
    held: dict[str, set[str]] = {}
    with Recorder() as receiver:
        hook = receiver.url + "/hook"
        for name, at in zip(names, KILLS, strict=False):
            proc = dispatcher(store_url, hook, name, tmp_path / f"{name}.log")
            try:
                receiver.wait_for(at, timeout=60)
            finally:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
            held[name] = held_at_kill(engine)
        last = dispatcher(store_url, hook, names[-1], tmp_path / f"{names[-1]}.log")
        try:
            wait_until(lambda: statuses(engine)[PENDING] == 0, limit=60)
        finally:
            last.send_signal(signal.SIGTERM)
            code = last.wait(timeout=20)
        requests = list(receiver.requests)
    assert code == 0
    counts = statuses(engine)
    engine.dispose()

    assert {r.headers["webhook-id"] for r in requests} == ids, "an event never arrived"
    assert counts == {DELIVERED: COUNT}, counts
    sent = sent_by(requests)
    for n, name in enumerate(names):
        assert len(sent[name]) == len(set(sent[name])), f"{name} sent a delivery twice"
        if name in held:
            later = {i for other in names[n + 1 :] for i in sent[other]}
            resent = set(sent[name]) & later
            assert resent <= held[name], f"{name}: sent again what it no longer held"
            assert len(resent) <= UNRECORDED, (
                f"{name}: {len(resent)} sent again, {len(held[name])} held at the kill"
            )
    bodies: dict[str, set[bytes]] = collections.defaultdict(set)
    webhook = Webhook(dispatch.SECRET)
    for r in requests:
        assert webhook.verify(r.body, r.headers)["id"] == r.headers["webhook-id"]
        bodies[r.headers["webhook-id"]].add(r.body)
    assert all(len(b) == 1 for b in bodies.values()), "a resend's body differs from the first"
