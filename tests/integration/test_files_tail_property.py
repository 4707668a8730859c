"""Reading the files listing at its end and listing it in full find the same events."""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.simulator import Simulator, SimulatorServer
from poller.sources import FILES

from .twins import twins

T0 = 1_800_000_000.0
HISTORY = 12
"""Files before the baseline, a minute apart: enough for an order to be learned."""

upload = st.tuples(st.just("upload"))
# a slow upload: listed now, created up to a minute ago (polling.HEAD_OVERLAP), so it can
# sort behind files poller already knows
late = st.tuples(st.just("late"), st.integers(min_value=1, max_value=60))
delete = st.tuples(st.just("delete"), st.integers(min_value=0, max_value=60))
advance = st.tuples(st.just("advance"), st.sampled_from([1.0, 30.0, 600.0]))
poll = st.tuples(st.just("poll"))
histories = st.lists(
    st.one_of(upload, upload, late, delete, delete, advance, poll, poll), min_size=3, max_size=25
)
# an upload hides a deletion deep in history from the total
HIDDEN = [("delete", 2), ("upload",), ("poll",), ("advance", 30.0), ("poll",)]
# a slow upload sorts behind a known file older than the newest, and a deletion balances it
LATE = [("upload",), ("advance", 30.0), ("upload",), ("poll",), ("late", 45), ("delete", 0)]


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Clock, SimulatorServer]]:
    clock = Clock()
    with SimulatorServer(Simulator(clock=clock, seed=2)) as server:
        yield clock, server


async def play(
    served: tuple[Clock, SimulatorServer],
    order: str,
    ops: list[tuple[Any, ...]],
    page_size: int,
    root: pathlib.Path,
) -> tuple[set[Any], set[Any]]:
    clock, server = served
    sim = server.sim
    sim.reset()
    sim.set_files_order(order)
    living = [
        sim.create_file(created_at=clock.t - 60 * (HISTORY - n))["id"] for n in range(HISTORY)
    ]
    async with (
        httpx.AsyncClient(base_url=server.url) as http,
        twins(FILES, http, root, page_size=page_size, clock=clock) as both,
    ):
        await both.poll()  # the baseline
        for op in ops:
            if op[0] == "upload":
                living.append(sim.create_file()["id"])
            elif op[0] == "late":
                living.append(sim.create_file(created_at=clock.t - op[1])["id"])
            elif op[0] == "delete" and living:
                sim.delete_file(living.pop(op[1] % len(living)))
            elif op[0] == "advance":
                clock.t += op[1]
            elif op[0] == "poll":
                await both.poll()
        clock.t += 1
        await both.poll()
    return both.lean, both.full


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    order=st.sampled_from(["newest", "oldest", "none"]),
    ops=histories,
    page_size=st.integers(min_value=2, max_value=5),
)
@example(order="newest", ops=HIDDEN, page_size=3)
@example(order="oldest", ops=HIDDEN, page_size=3)
@example(order="newest", ops=LATE, page_size=3)
@example(order="oldest", ops=LATE, page_size=2)
def test_tail_and_full_listing_agree(
    served: tuple[Clock, SimulatorServer], order: str, ops: list[tuple[Any, ...]], page_size: int
) -> None:
    """Over random uploads (some listed late) and deletions, in any order, both find the same."""
    with tempfile.TemporaryDirectory() as tmp:
        tail, full = asyncio.run(play(served, order, ops, page_size, pathlib.Path(tmp)))
    assert tail == full
