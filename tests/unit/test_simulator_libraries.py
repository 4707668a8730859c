"""The simulator's libraries and documents, driven through their Python API on a frozen clock."""

from __future__ import annotations

from typing import Any

import pytest

from poller.simulator import Simulator
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.libraries import Libraries

T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> Simulator:
    return Simulator(clock=clock, seed=5)


@pytest.fixture
def libs(sim: Simulator) -> Libraries:
    return sim


def shelf(libs: Libraries, **kwargs: Any) -> str:
    return str(libs.create_library(name="Manuals", **kwargs)["id"])


def test_processing_moves_with_the_clock(libs: Libraries, clock: Clock) -> None:
    """An upload is todo, then in_progress after queued_for, then its outcome."""
    lib = shelf(libs)
    doc = libs.add_document(lib, queued_for=2, processing_for=10, outcome="done")
    assert (doc["process_status"], doc["last_processed_at"], doc["summary"]) == ("todo", None, None)
    clock.t = T0 + 2
    assert libs.document_status(lib, doc["id"])["process_status"] == "in_progress"
    clock.t = T0 + 12
    done = libs.get_document(lib, doc["id"])
    assert done["process_status"] == done["processing_status"] == "done"
    assert done["last_processed_at"] == "2025-06-15T15:06:52.000000Z"
    assert done["summary"] and done["tokens_processing_total"] > 0


@pytest.mark.parametrize("outcome", ["error", "missing_content"])
def test_a_pass_can_fail(libs: Libraries, clock: Clock, outcome: str) -> None:
    """A document planned to fail ends in its outcome, with no summary."""
    lib = shelf(libs)
    doc = libs.add_document(lib, outcome=outcome)
    clock.t = T0 + 60
    failed = libs.get_document(lib, doc["id"])
    assert (failed["process_status"], failed["summary"]) == (outcome, None)
    assert failed["last_processed_at"] is not None


def test_advance_moves_a_document_now_and_fail_ends_its_pass(libs: Libraries) -> None:
    """advance goes todo → in_progress → outcome; a status given fails the pass at once."""
    lib = shelf(libs)
    doc = libs.add_document(lib, queued_for=100, processing_for=100)
    assert libs.advance_document(lib, doc["id"])["process_status"] == "in_progress"
    assert libs.advance_document(lib, doc["id"], "error")["process_status"] == "error"
    with pytest.raises(InvalidRequest, match="reprocess it"):
        libs.advance_document(lib, doc["id"])
    with pytest.raises(InvalidRequest, match="document status"):
        libs.advance_document(lib, libs.add_document(lib)["id"], "todo")


def test_reprocess_starts_a_new_pass_keeping_the_last_one_until_it_ends(
    libs: Libraries, clock: Clock
) -> None:
    """A reprocessed document is todo again; last_processed_at moves when the pass ends."""
    lib = shelf(libs)
    doc = libs.add_document(lib)
    clock.t = T0 + 10
    first = libs.get_document(lib, doc["id"])["last_processed_at"]
    libs.reprocess_document(lib, doc["id"], outcome="error")
    again = libs.get_document(lib, doc["id"])
    assert (again["process_status"], again["last_processed_at"]) == ("todo", first)
    clock.t = T0 + 20
    ended = libs.get_document(lib, doc["id"])
    assert ended["process_status"] == "error" and ended["last_processed_at"] > first


def test_uploading_the_same_content_answers_the_existing_document(libs: Libraries) -> None:
    """The second upload of the same bytes to a library adds nothing."""
    lib = shelf(libs)
    first, created = libs.upload_document(lib, "a.md", b"hello")
    second, again = libs.upload_document(lib, "b.md", b"hello")
    assert (created, again, second["id"]) == (True, False, first["id"])
    assert libs.get_library(lib)["nb_documents"] == 1
    assert first["mime_type"] == "text/markdown" and first["extension"] == "md"


def test_uploads_and_deletions_move_the_library(libs: Libraries, clock: Clock) -> None:
    """nb_documents, total_size and updated_at follow uploads and deletions, not processing."""
    lib = shelf(libs)
    clock.t = T0 + 5
    doc = libs.add_document(lib, size=100)
    after_upload = libs.get_library(lib)
    assert (after_upload["nb_documents"], after_upload["total_size"]) == (1, 100)
    assert after_upload["updated_at"] > after_upload["created_at"]
    clock.t = T0 + 60
    assert libs.get_library(lib) == after_upload
    libs.delete_document(lib, doc["id"])
    after_delete = libs.get_library(lib)
    assert (after_delete["nb_documents"], after_delete["total_size"]) == (0, 0)
    assert after_delete["updated_at"] > after_upload["updated_at"]


def test_deleting_a_library_deletes_its_documents(libs: Libraries) -> None:
    """A deleted library answers 404, and so do its documents."""
    lib = shelf(libs)
    doc = libs.add_document(lib)
    assert libs.delete_library(lib)["id"] == lib
    with pytest.raises(NotFound):
        libs.get_library(lib)
    with pytest.raises(NotFound):
        libs.get_document(lib, doc["id"])


def test_library_cursor_pages_stay_whole_while_libraries_come_and_go(
    libs: Libraries, clock: Clock
) -> None:
    """Paging by next_page_token neither skips nor repeats a library that stays."""
    made = []
    for n in range(5):
        clock.t = T0 + n
        made.append(shelf(libs))
    first = libs.list_libraries(page_size=2)
    clock.t = T0 + 10
    newer = shelf(libs)
    libs.delete_library(made[0])
    second = libs.list_libraries(page_size=2, page_token=first["next_page_token"])
    ids = [lib["id"] for page in (first, second) for lib in page["data"]]
    assert ids == made[:0:-1] and newer not in ids
    assert second["next_page_token"] is None


def test_a_page_token_not_given_by_the_api_is_refused(libs: Libraries) -> None:
    """A made-up page_token is a bad request."""
    with pytest.raises(InvalidRequest, match="page_token"):
        libs.list_libraries(page_token="not-a-token")


def test_documents_page_newest_first_with_their_pagination(libs: Libraries, clock: Clock) -> None:
    """A library's documents page by page, newest first by default, oldest first on asking."""
    lib = shelf(libs)
    docs = []
    for n in range(5):
        clock.t = T0 + n
        docs.append(libs.add_document(lib)["id"])
    page = libs.list_documents(lib, page=1, page_size=2)
    assert [d["id"] for d in page["data"]] == [docs[2], docs[1]]
    assert page["pagination"] == {
        "total_items": 5, "total_pages": 3, "current_page": 1, "page_size": 2, "has_more": True,
    }  # fmt: skip
    oldest = libs.list_documents(lib, page_size=2, sort_order="asc")
    assert [d["id"] for d in oldest["data"]] == docs[:2]
    with pytest.raises(InvalidRequest, match="page_size"):
        libs.list_documents(lib, page_size=101)


def test_bulk_adds_processed_documents(libs: Libraries) -> None:
    """bulk makes N libraries of M documents, every one done."""
    libs.bulk_libraries(libraries=3, documents=40)
    assert libs.library_counts() == {"libraries": 3, "documents": 40 * 3}
    listed = libs.list_libraries()["data"]
    assert {lib["nb_documents"] for lib in listed} == {40}
    statuses = {d["process_status"] for d in libs.list_documents(listed[0]["id"])["data"]}
    assert statuses == {"done"}


def test_an_unavailable_api_answers_404(libs: Libraries) -> None:
    """set_available(False) makes every libraries call a 404."""
    lib = shelf(libs)
    libs.set_libraries_available(False)
    with pytest.raises(NotFound):
        libs.list_libraries()
    with pytest.raises(NotFound):
        libs.get_library(lib)


def test_activity_makes_every_kind_of_library_change(clock: Clock) -> None:
    """Within a couple of cycles the activity uploads, fails, reprocesses and deletes."""
    sim = Simulator(clock=clock, seed=2, activity=True, activity_every=4)
    libs = sim
    seen_statuses: set[str] = set()
    seen_libraries: set[str] = set()
    documents_seen: set[str] = set()
    for step in range(60):
        clock.t = T0 + step
        for lib in libs.list_libraries()["data"]:
            seen_libraries.add(lib["id"])
            for doc in libs.list_documents(lib["id"])["data"]:
                seen_statuses.add(doc["process_status"])
                documents_seen.add(doc["id"])
    assert {"todo", "in_progress", "done", "error", "missing_content"} <= seen_statuses
    now_listed = {lib["id"] for lib in libs.list_libraries()["data"]}
    assert seen_libraries - now_listed, "no library was deleted"
    now_docs = {d["id"] for lib in now_listed for d in libs.list_documents(lib)["data"]}
    assert documents_seen - now_docs, "no document was deleted"


def test_reset_forgets_libraries_and_the_demo_has_some(clock: Clock) -> None:
    """The demo scenario starts with libraries; reset forgets them."""
    sim = Simulator(clock=clock, seed=1, scenario="demo")
    assert sim.library_counts() == {"libraries": 2, "documents": 6}
    sim.reset()
    assert sim.library_counts() == {"libraries": 0, "documents": 0}
