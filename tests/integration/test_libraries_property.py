"""Reading only what moved and reading every library whole find the same events.

Over random histories of libraries made and deleted, documents uploaded (processed,
failing, missing content, quick or slow) and deleted, at random page sizes. A reprocess
shows in no list the cheap path reads and is left to the reconcile (tested on its own).
"""

from __future__ import annotations

import asyncio
import pathlib
import tempfile
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from poller.libraries.source import LibraryPoller
from poller.simulator import Simulator, build_app
from poller.sources import LIBRARIES

from .twins import twins

T0 = 1_800_000_000.0

library = st.tuples(st.just("library"))
upload = st.tuples(
    st.just("upload"),
    st.integers(min_value=0, max_value=20),
    st.sampled_from(["done", "done", "error", "missing_content"]),
    st.sampled_from([0.0, 2.0, 60.0]),
    st.sampled_from([0.0, 1.0, 1.0]),
)
advance = st.tuples(st.just("advance"), st.sampled_from([0.0, 1.0, 5.0, 120.0]))
delete_document = st.tuples(st.just("delete_document"), st.integers(min_value=0, max_value=50))
delete_library = st.tuples(st.just("delete_library"), st.integers(min_value=0, max_value=20))
poll = st.tuples(st.just("poll"))
histories = st.lists(
    st.one_of(
        library,
        upload,
        upload,
        upload,
        advance,
        advance,
        delete_document,
        delete_library,
        poll,
        poll,
        poll,
    ),
    min_size=4,
    max_size=35,
)

# a deletion below the head of a library a cheap read would stop at
DELETED_BELOW_THE_HEAD = [
    ("upload", 0, "done", 0.0, 1.0),
    ("upload", 0, "done", 0.0, 1.0),
    ("upload", 0, "done", 0.0, 1.0),
    ("poll",),
    ("delete_document", 0),
    ("poll",),
]
# uploads in the same second as a known document, one of them out of sight
SAME_SECOND = [
    ("upload", 0, "done", 0.0, 1.0),
    ("upload", 0, "done", 0.0, 0.0),
    ("poll",),
    ("upload", 0, "error", 0.0, 0.0),
    ("upload", 0, "done", 0.0, 0.0),
    ("delete_document", 0),
    ("poll",),
]


async def play(
    ops: list[tuple[Any, ...]], page_size: int, root: pathlib.Path
) -> tuple[set[Any], set[Any]]:
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=1)
    libs = sim
    transport = httpx.ASGITransport(app=build_app(sim))
    async with (
        httpx.AsyncClient(base_url="http://sim/v1", transport=transport) as http,
        twins(
            LIBRARIES, http, root, page_size=page_size, clock=lambda: now["t"],
            factory=LibraryPoller,
        ) as both,
    ):  # fmt: skip
        libs.create_library(name="first")
        await both.poll()  # the baseline: one empty library
        shelves = [libs.list_libraries()["data"][0]["id"]]
        documents: list[tuple[str, str]] = []
        for op in ops:
            if op[0] == "library":
                shelves.append(libs.create_library(name=f"lib{len(shelves)}")["id"])
            elif op[0] == "upload" and shelves:
                now["t"] += op[4]  # uploads a second apart, or in the same second
                shelf = shelves[op[1] % len(shelves)]
                doc = libs.add_document(shelf, outcome=op[2], queued_for=0, processing_for=op[3])
                documents.append((shelf, doc["id"]))
            elif op[0] == "advance":
                now["t"] += op[1]
            elif op[0] == "delete_document" and documents:
                shelf, doc_id = documents.pop(op[1] % len(documents))
                if shelf in shelves:
                    libs.delete_document(shelf, doc_id)
            elif op[0] == "delete_library" and shelves:
                shelf = shelves.pop(op[1] % len(shelves))
                libs.delete_library(shelf)
            elif op[0] == "poll":
                await both.poll()
        now["t"] += 86400
        await both.poll()
        await both.poll()
    return both.lean, both.full


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=histories, page_size=st.integers(min_value=1, max_value=4))
@example(ops=DELETED_BELOW_THE_HEAD, page_size=2)
@example(ops=SAME_SECOND, page_size=1)
def test_reading_what_moved_and_reading_everything_agree(
    ops: list[tuple[Any, ...]], page_size: int
) -> None:
    """Over random histories and page sizes, both ways of reading emit the same events."""
    with tempfile.TemporaryDirectory() as tmp:
        lean, full = asyncio.run(play(ops, page_size, pathlib.Path(tmp)))
    assert lean == full
