"""The libraries source's rules, as tables: keys, remembered forms, passes, events and ids."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from poller.libraries import core
from poller.model import Resource

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LIB = "0b9f4c1e-7f6a-4f0e-9d59-5d1f7f0f2a11"
CREATED = "2026-11-27T10:00:00.250000Z"  # 1_795_773_600


def doc(
    id: str = "d1", status: str = "todo", processed: str | None = None, **kw: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "library_id": LIB,
        "hash": "ab12",
        "mime_type": "application/pdf",
        "extension": "pdf",
        "size": 2048,
        "name": f"{id}.pdf",
        "summary": "a summary" if status == "done" else None,
        "created_at": CREATED,
        "last_processed_at": processed,
        "number_of_pages": 3,
        "process_status": status,
        "uploaded_by_id": None,
        "uploaded_by_type": "Workspace",
        "processing_status": status,
        "tokens_processing_total": 77,
        **kw,
    }


def library(id: str = LIB, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "name": "Manuals",
        "created_at": CREATED,
        "updated_at": CREATED,
        "owner_id": None,
        "owner_type": "Workspace",
        "total_size": 2048,
        "nb_documents": 1,
        "chunk_size": None,
        "description": None,
        **kw,
    }


def row(obj: dict[str, Any], count: int = 0) -> Resource:
    return core.with_pass(core.document(obj), count)


def events(result: Any) -> list[tuple[str, str]]:
    return [(e.type, e.resource_id) for e in result.events]


def test_keys_name_a_library_or_one_of_its_documents() -> None:
    """A document's key is library/document; a library's is its id."""
    key = core.document_key(LIB, "d1")
    assert key == f"{LIB}/d1" and core.split(key) == (LIB, "d1") and core.is_document(key)
    assert core.split(LIB) == (LIB, None) and not core.is_document(LIB)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2026-11-27T10:00:00.250000Z", 1_795_773_600), ("2026-11-27T10:00:00+01:00", 1_795_770_000),
     ("2026-11-27T10:00:00", 1_795_773_600), ("yesterday", None), (1_795_773_600, None),
     (None, None)],
)  # fmt: skip
def test_unix_reads_the_api_date_times(value: Any, seconds: int | None) -> None:
    """API date-times become whole unix seconds (UTC when no zone); anything else None."""
    assert core.unix(value) == seconds


def test_a_document_keeps_what_payloads_read_and_no_deprecated_field() -> None:
    """The remembered document keeps its payload fields, without hash or processing_status."""
    kept = core.document(doc(status="done", processed=CREATED))
    assert kept.id == f"{LIB}/d1" and kept.status == "done" and kept.created == 1_795_773_600
    assert "hash" not in kept.data and "processing_status" not in kept.data
    assert kept.data["summary"] == "a summary" and kept.data["last_processed_at"] == CREATED


def test_a_library_keeps_its_fingerprint_fields() -> None:
    """The remembered library keeps what tells its documents moved."""
    kept = core.library(library(nb_documents=4, total_size=10))
    assert core.fingerprint(kept) == [CREATED, 4, 10]
    assert core.read_at(kept) is None
    assert core.read_at(core.with_read(kept, [CREATED, 4, 10])) == [CREATED, 4, 10]


@pytest.mark.parametrize("bad", [{"id": ""}, {"id": "a/b"}, {"id": 3}])
def test_an_object_without_a_usable_id_is_refused(bad: dict[str, Any]) -> None:
    """An id that is missing, empty or holds a slash cannot be a key."""
    with pytest.raises(ValueError):
        core.library(library(**bad))
    with pytest.raises(ValueError):
        core.document(doc(**bad))


@pytest.mark.parametrize(
    ("previous", "current", "count"),
    [(("todo", None), ("in_progress", None), 0),
     (("in_progress", None), ("done", "t1"), 0),
     (("done", "t1"), ("done", "t1"), 0),
     (("done", "t1"), ("todo", "t1"), 1),
     (("done", "t1"), ("done", "t2"), 1),
     (("error", None), ("error", None), 0),
     (("error", None), ("done", "t2"), 1),
     (("noop", None), ("in_progress", None), 1)],
)  # fmt: skip
def test_a_new_pass_begins_when_a_settled_document_moves(
    previous: tuple[str, str | None], current: tuple[str, str | None], count: int
) -> None:
    """A pass begins when a settled document is active again or settles otherwise."""
    before = row(doc(status=previous[0], processed=previous[1]), 0)
    now = core.document(doc(status=current[0], processed=current[1]))
    assert core.next_pass(before, now) == count


def test_a_new_document_is_uploaded_then_its_outcome_if_settled() -> None:
    """Seen for the first time already done: uploaded, then processed (pass 0)."""
    result = core.documents({}, [core.document(doc(status="done"))], workspace="w", now=NOW)
    assert events(result) == [
        ("library_document.uploaded", "d1"),
        ("library_document.processed", "d1"),
    ]
    assert core.passes(result.upserts[0]) == 0


@pytest.mark.parametrize(
    ("status", "event"),
    [("done", "library_document.processed"), ("error", "library_document.failed"),
     ("missing_content", "library_document.failed"), ("noop", None), ("self_managed", None),
     ("in_progress", None)],
)  # fmt: skip
def test_an_active_document_gets_the_outcome_of_its_status(status: str, event: str | None) -> None:
    """done is processed, error and missing_content failed; noop, self_managed settle silently."""
    before = {f"{LIB}/d1": row(doc())}
    result = core.documents(before, [core.document(doc(status=status))], workspace="w", now=NOW)
    assert [e.type for e in result.events] == ([event] if event else [])
    assert len(result.upserts) == 1


def test_a_reprocessed_document_gets_a_new_outcome_id_and_the_same_pass_keeps_its_id() -> None:
    """Outcome ids carry the pass: a reprocess gives a new id, re-detection the same one."""
    key = f"{LIB}/d1"
    first = core.documents(
        {key: row(doc())}, [core.document(doc(status="done", processed="t1"))],
        workspace="w", now=NOW,
    )  # fmt: skip
    again = core.documents(
        {key: row(doc())}, [core.document(doc(status="done", processed="t1"))],
        workspace="w", now=NOW + dt.timedelta(hours=1),
    )  # fmt: skip
    assert first.events[0].id == again.events[0].id
    done = first.upserts[0]
    reopened = core.documents({key: done}, [core.document(doc(processed="t1"))],
                              workspace="w", now=NOW)  # fmt: skip
    assert reopened.events == () and core.passes(reopened.upserts[0]) == 1
    second = core.documents(
        {key: reopened.upserts[0]}, [core.document(doc(status="done", processed="t2"))],
        workspace="w", now=NOW,
    )  # fmt: skip
    assert [e.type for e in second.events] == ["library_document.processed"]
    assert second.events[0].id != first.events[0].id


def test_a_reprocess_that_began_and_ended_between_polls_is_a_new_pass() -> None:
    """A settled document settled again with a new last_processed_at gets a new outcome."""
    key = f"{LIB}/d1"
    done = row(doc(status="done", processed="t1"), 0)
    result = core.documents({key: done}, [core.document(doc(status="error", processed="t2"))],
                            workspace="w", now=NOW)  # fmt: skip
    assert [e.type for e in result.events] == ["library_document.failed"]
    assert core.passes(result.upserts[0]) == 1


def test_document_event_ids_are_pinned() -> None:
    """The ids receivers deduplicate by, for the uploaded and the first two passes' outcomes."""
    seen = core.with_pass(core.document(doc(status="done")), 0)
    assert [
        core.document_event(t, seen, workspace="default", now=NOW, count=c).id
        for t, c in (("library_document.uploaded", None), ("library_document.processed", 0),
                     ("library_document.processed", 1), ("library_document.deleted", None))
    ] == [
        "evt_lul4fr6jmsghgwgcaplkn4lxby",
        "evt_ajjudpi4d7q3qbyk2tecylx4va",
        "evt_4aqwxbdlfha7jov2im7enlvy3m",
        "evt_2pvtivqrcis7sa2rxrkbzh3lcu",
    ]  # fmt: skip


def test_payloads_carry_the_api_fields() -> None:
    """A processed event's payload: ids, name, type, size, status, times, pages, tokens, summary."""
    result = core.documents(
        {f"{LIB}/d1": row(doc())}, [core.document(doc(status="done", processed=CREATED))],
        workspace="w", now=NOW,
    )  # fmt: skip
    assert dict(result.events[0].data) == {
        "id": "d1",
        "library_id": LIB,
        "name": "d1.pdf",
        "mime_type": "application/pdf",
        "size": 2048,
        "process_status": "done",
        "last_processed_at": CREATED,
        "number_of_pages": 3,
        "tokens_processing_total": 77,
        "summary": "a summary",
    }


def test_a_silent_baseline_records_without_announcing() -> None:
    """announce=False writes the rows and no event."""
    result = core.documents({}, [core.document(doc(status="error"))], announce=False,
                            workspace="w", now=NOW)  # fmt: skip
    assert result.events == () and len(result.upserts) == 1


def test_a_deleted_library_announces_its_documents_then_itself() -> None:
    """Documents of a library gone are deleted first, oldest first, then the library."""
    lib = core.with_read(core.library(library()), None)
    older = row(doc("d0", created_at="2026-11-27T09:00:00Z"))
    newer = row(doc("d1"))
    before = {lib.id: lib, older.id: older, newer.id: newer}
    result = core.changes(before, [], gone=[lib.id, newer.id, older.id], workspace="w", now=NOW)
    assert events(result) == [
        ("library_document.deleted", "d0"),
        ("library_document.deleted", "d1"),
        ("library.deleted", LIB),
    ]
    assert set(result.removals) == {lib.id, older.id, newer.id}


def test_a_new_library_comes_before_its_documents() -> None:
    """library.created is announced before the uploads seen in the same poll."""
    result = core.changes(
        {}, [core.document(doc()), core.library(library())], workspace="w", now=NOW
    )
    assert events(result) == [("library.created", LIB), ("library_document.uploaded", "d1")]


def test_only_a_document_still_processing_is_active() -> None:
    """The snapshot's active flag: documents in todo, in_progress or waiting_for_capacity."""
    assert [core.is_active(core.document(doc(status=s))) for s in
            ("todo", "in_progress", "waiting_for_capacity", "done", "noop")] == [
        True, True, True, False, False,
    ]  # fmt: skip
    assert not core.is_active(core.library(library()))
