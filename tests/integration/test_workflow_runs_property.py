"""Workflow runs: time windows and a full listing find the same events, over random histories."""

from __future__ import annotations

import asyncio
import datetime as dt
import pathlib
import tempfile
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.simulator import Simulator, build_app
from poller.sources import WORKFLOW_RUNS
from poller.workflow_runs.source import WorkflowRunPoller

from .twins import twins

T0 = 1_800_000_000.0

start = st.tuples(
    st.just("start"),
    st.sampled_from(["COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT"]),
    st.sampled_from([0.0, 30.0, 200.0]),
    st.integers(min_value=0, max_value=2),  # runs that continue as new first
    st.sampled_from([None, 1.0]),  # a retry spell
    st.booleans(),  # internal
)
move = st.tuples(
    st.just("move"),
    st.integers(min_value=0, max_value=50),
    st.sampled_from(["cancel", "terminate", "RETRYING_AFTER_ERROR", "COMPLETED"]),
)
late = st.tuples(st.just("late"), st.sampled_from([5.0, 45.0]))
end_late = st.tuples(
    st.just("end_late"),
    st.integers(min_value=0, max_value=50),
    st.sampled_from(["COMPLETED", "FAILED", "TIMED_OUT"]),
    st.sampled_from([5.0, 45.0]),
)
advance = st.tuples(st.just("advance"), st.sampled_from([1.0, 30.0, 90.0, 300.0]))
poll = st.tuples(st.just("poll"))
histories = st.lists(
    st.one_of(start, start, move, late, end_late, advance, advance, poll, poll, poll),
    min_size=4,
    max_size=30,
)
# a run started at the very second of the cursor, another that ends far from its start,
# a chain of runs continuing as new across polls, and an end listed 45 s late, 15 s older
# than the newest time the poll before saw
EDGES = [
    ("start", "COMPLETED", 200.0, 2, None, False),
    ("poll",),
    ("start", "FAILED", 0.0, 0, 1.0, False),
    ("advance", 90.0),
    ("poll",),
    ("late", 45.0),
    ("advance", 300.0),
    ("poll",),
    ("start", "COMPLETED", 200.0, 0, None, False),
    ("poll",),
    ("advance", 30.0),
    ("start", "COMPLETED", 0.0, 0, None, False),
    ("poll",),
    ("advance", 30.0),
    ("end_late", 2, "FAILED", 45.0),
    ("poll",),
]


async def play(
    ops: list[tuple[Any, ...]], page_size: int, root: pathlib.Path
) -> tuple[set[Any], set[Any]]:
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=1)
    runs = sim.workflows
    transport = httpx.ASGITransport(app=build_app(sim))
    async with (
        httpx.AsyncClient(base_url="http://sim/v1", transport=transport) as http,
        twins(
            WORKFLOW_RUNS,
            http,
            root,
            page_size=page_size,
            clock=lambda: now["t"],
            factory=WorkflowRunPoller,
            options={"page_size": page_size},
        ) as both,
    ):
        await both.poll()  # baseline of an empty workspace
        started: list[dict[str, Any]] = []
        for op in ops:
            if op[0] == "start":
                _, outcome, running_for, continues, retrying_at, internal = op
                started.append(
                    runs.create_run(
                        outcome=outcome,
                        running_for=running_for,
                        continues=continues,
                        retrying_at=retrying_at,
                        internal=internal,
                        workflow_name="parallel-execution" if internal else "order-fulfilment",
                    )
                )
            elif op[0] == "move" and started:
                run = started[op[1] % len(started)]
                current = runs.get_execution(run["execution_id"])
                if current["status"] not in ("RUNNING", "RETRYING_AFTER_ERROR"):
                    continue
                if op[2] == "cancel":
                    runs.cancel(run["execution_id"])
                elif op[2] == "terminate":
                    runs.terminate(run["execution_id"])
                elif current["status"] != op[2]:
                    runs.advance(current["run_id"], op[2])
            elif op[0] == "end_late" and started:
                # listed ended only now, though it ended up to 45 s ago (the last poll saw
                # it moving, perhaps after that)
                current = runs.get_execution(started[op[1] % len(started)]["execution_id"])
                if current["status"] in ("RUNNING", "RETRYING_AFTER_ERROR"):
                    begun = dt.datetime.fromisoformat(current["start_time"]).timestamp()
                    runs.advance(current["run_id"], op[2], at=max(begun, now["t"] - op[3]))
            elif op[0] == "late":
                # visible only now, though it started within the overlap of the last poll
                runs.create_run(start_time=now["t"] - op[1], running_for=op[1] / 2)
            elif op[0] == "advance":
                now["t"] += op[1]
            elif op[0] == "poll":
                await both.poll()
        now["t"] += 86400
        await both.poll()
        await both.poll()
    return both.lean, both.full


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=histories, page_size=st.integers(min_value=1, max_value=4))
@example(ops=EDGES, page_size=1)
def test_windows_and_full_listing_agree(ops: list[tuple[Any, ...]], page_size: int) -> None:
    """Over random histories and page sizes, windows and full listings emit the same events."""
    with tempfile.TemporaryDirectory() as tmp:
        incremental, full = asyncio.run(play(ops, page_size, pathlib.Path(tmp)))
    assert incremental == full
