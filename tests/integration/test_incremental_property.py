"""Incremental polling and full relisting find the same events, over random histories."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import tempfile
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.simulator import Simulator, build_app
from poller.sources import BATCH_JOBS

from .twins import twins

T0 = 1_800_000_000.0

create = st.tuples(
    st.just("create"),
    st.sampled_from(["SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"]),
    st.sampled_from([0.0, 50.0]),
    st.sampled_from([0.0, 100.0, 200.0]),
)
advance = st.tuples(st.just("advance"), st.sampled_from([1.0, 90.0, 300.0]))
delete = st.tuples(st.just("delete"), st.integers(min_value=0, max_value=50))
poll = st.tuples(st.just("poll"))
histories = st.lists(
    st.one_of(create, create, advance, advance, delete, poll, poll, poll), min_size=4, max_size=30
)
# a job that leaves the active set after newer jobs moved the head window past it
LEFT_BEHIND = [
    ("create", "SUCCESS", 50.0, 200.0),
    ("poll",),
    ("advance", 90.0),
    ("create", "FAILED", 0.0, 0.0),
    ("poll",),
    ("advance", 300.0),
    ("poll",),
]

# a job deleted once finished: between reconciles nothing is moving, so only the
# reconcile finds its deletion
FINISHED_THEN_DELETED = [
    ("create", "SUCCESS", 0.0, 0.0),
    ("create", "SUCCESS", 0.0, 0.0),
    ("poll",),
    ("delete", 0),
]


async def play(
    ops: list[tuple[Any, ...]], page_size: int, root: pathlib.Path
) -> tuple[set[Any], set[Any]]:
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=1)
    transport = httpx.ASGITransport(app=build_app(sim))
    async with (
        httpx.AsyncClient(base_url="http://sim/v1", transport=transport) as http,
        twins(BATCH_JOBS, http, root, page_size=page_size, clock=lambda: now["t"]) as both,
    ):
        await both.poll()  # baseline of an empty workspace
        created: list[str] = []
        for op in ops:
            if op[0] == "create":
                job = sim.create_batch_job(outcome=op[1], queued_for=op[2], running_for=op[3])
                created.append(job["id"])
            elif op[0] == "advance":
                now["t"] += op[1]
            elif op[0] == "delete" and created:
                sim.delete("batch_jobs", created.pop(op[1] % len(created)))
            elif op[0] == "poll":
                await both.poll()
        now["t"] += 86400
        await both.poll()
        await both.poll()
        # the daemon reconciles every poll.reconcile_interval: a finished job deleted is
        # found there (between reconciles only a moving one is, by its direct GET)
        lean = both.pollers[0]
        lean.settings = dataclasses.replace(lean.settings, reconcile_interval=0)
        await both.poll()
    return both.lean, both.full


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=histories, page_size=st.integers(min_value=1, max_value=4))
@example(ops=LEFT_BEHIND, page_size=1)
@example(ops=FINISHED_THEN_DELETED, page_size=1)
def test_incremental_and_full_listing_agree(ops: list[tuple[Any, ...]], page_size: int) -> None:
    """Over random histories and page sizes, incremental polling (closed by a reconcile, as
    the daemon's are) and full listing emit the same events."""
    with tempfile.TemporaryDirectory() as tmp:
        incremental, full = asyncio.run(play(ops, page_size, pathlib.Path(tmp)))
    assert incremental == full
