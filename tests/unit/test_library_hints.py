"""Hints about libraries and documents: a call read as polling would read the change."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from poller import hints, synchronous
from poller.libraries import core
from poller.model import Resource

T = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
LIB = "0b9f4c1e-7f6a-4f0e-9d59-5d1f7f0f2a11"
DOC = "6a1e7d3c-55aa-4c1b-8e0f-4a2b9c8d7e6f"
CREATED = "2026-11-28T11:00:00.000000Z"
LIBRARY = {"id": LIB, "name": "Manuals", "created_at": CREATED, "updated_at": CREATED,
           "owner_id": None, "owner_type": "Workspace", "total_size": 0, "nb_documents": 0,
           "chunk_size": None, "description": None}  # fmt: skip
DOCUMENT = {"id": DOC, "library_id": LIB, "hash": None, "mime_type": "text/markdown",
            "extension": "md", "size": 8, "name": "guide.md", "created_at": CREATED,
            "process_status": "todo", "uploaded_by_id": None, "uploaded_by_type": "Workspace",
            "processing_status": "todo", "tokens_processing_total": 0}  # fmt: skip


def call(method: str, path: str, answer: Any = None, status: int = 200) -> synchronous.Call:
    return synchronous.Call(
        method=method,
        path=path,
        request_body=b"",
        status=status,
        content_type="application/json" if answer is not None else "",
        content_encoding=None,
        body=json.dumps(answer).encode() if answer is not None else b"",
        started_at=T,
        finished_at=T,
    )


def hint(method: str, path: str, answer: Any = None, status: int = 200) -> hints.Hint:
    found = hints.read(call(method, path, answer, status), "default")
    assert found is not None
    return found


def snapshot(*rows: Resource) -> dict[str, Resource]:
    return {r.id: r for r in rows}


def events(result: Any) -> list[tuple[str, str]]:
    return [(e.type, e.resource_id) for e in result.events]


@pytest.mark.parametrize(
    ("method", "path", "kind", "rid"),
    [("POST", "/libraries", "created", None),
     ("DELETE", f"/libraries/{LIB}", "deleted", LIB),
     ("POST", f"/libraries/{LIB}/documents", "created", None),
     ("DELETE", f"/libraries/{LIB}/documents/{DOC}", "deleted", DOC),
     ("POST", f"/libraries/{LIB}/documents/{DOC}/reprocess", "changed", DOC)],
)  # fmt: skip
def test_library_calls_route_to_the_libraries_source(
    method: str, path: str, kind: str, rid: str | None
) -> None:
    """Each call that changes a library or a document is the libraries source's."""
    found = hints.route(method, path)
    assert found is not None
    route, path_id = found
    assert (route.spec.name, route.kind, path_id) == ("libraries", kind, rid)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/libraries"), ("PATCH", f"/libraries/{LIB}"),
     ("GET", f"/libraries/{LIB}/documents/{DOC}/status"),
     ("PUT", f"/libraries/{LIB}/documents/{DOC}")],
)  # fmt: skip
def test_other_library_calls_give_no_hint(method: str, path: str) -> None:
    """Reads and renames change nothing polling announces."""
    assert hints.route(method, path) is None


def test_an_upload_is_announced_with_polling_s_id_and_joins_the_active_set() -> None:
    """The uploaded document: library_document.uploaded with the id a poll would give it."""
    upload = hint("POST", f"/libraries/{LIB}/documents", DOCUMENT, status=201)
    assert upload.joins_active_set and upload.resource_id == DOC
    result = hints.plan(upload, {})
    assert events(result) == [("library_document.uploaded", DOC)]
    polled = core.documents({}, [core.document(DOCUMENT)], workspace="default", now=T)
    assert [e.id for e in result.events] == [e.id for e in polled.events]
    assert hints.plan(upload, snapshot(*result.upserts)).events == ()


def test_a_new_library_is_announced_once() -> None:
    """library.created for a library the snapshot lacks; nothing for one it has."""
    made = hint("POST", "/libraries", LIBRARY, status=201)
    result = hints.plan(made, {})
    assert events(result) == [("library.created", LIB)] and not made.joins_active_set
    known = core.with_read(core.library(LIBRARY), [CREATED, 0, 0])
    assert hints.plan(made, snapshot(known)).empty


def test_a_deleted_document_is_dropped_only_when_known() -> None:
    """DELETE answered 204: library_document.deleted if the snapshot has the document."""
    deletion = hint("DELETE", f"/libraries/{LIB}/documents/{DOC}", status=204)
    row = core.with_pass(core.document(DOCUMENT), 0)
    result = hints.plan(deletion, snapshot(row))
    assert events(result) == [("library_document.deleted", DOC)]
    assert result.removals == (row.id,)
    assert hints.plan(deletion, {}).empty


def test_a_deleted_library_takes_its_documents_with_it() -> None:
    """A library's deletion drops its documents, announced before the library."""
    deletion = hint("DELETE", f"/libraries/{LIB}", LIBRARY)
    rows = snapshot(core.library(LIBRARY), core.with_pass(core.document(DOCUMENT), 0))
    assert events(hints.plan(deletion, rows)) == [
        ("library_document.deleted", DOC),
        ("library.deleted", LIB),
    ]
    assert hint("DELETE", f"/libraries/{LIB}", status=204).change == deletion.change


def test_a_reprocess_opens_a_new_pass_without_an_event() -> None:
    """A settled document goes back to todo in the next pass; an active one stays as it is."""
    reprocess = hint("POST", f"/libraries/{LIB}/documents/{DOC}/reprocess", status=204)
    assert reprocess.joins_active_set
    done = core.with_pass(core.document({**DOCUMENT, "process_status": "done"}), 2)
    result = hints.plan(reprocess, snapshot(done))
    (row,) = result.upserts
    assert (result.events, row.status, core.passes(row), core.is_active(row)) == (
        (),
        "todo",
        3,
        True,
    )
    assert hints.plan(reprocess, snapshot(row)).empty
    assert hints.plan(reprocess, {}).empty


@pytest.mark.parametrize(
    ("method", "path", "answer", "status"),
    [("POST", "/libraries", {"name": "no id"}, 201),
     ("POST", f"/libraries/{LIB}/documents", {"detail": "bad"}, 422),
     ("DELETE", f"/libraries/{LIB}/documents/a%2Fb", None, 204),
     ("POST", f"/libraries/{LIB}/documents", None, 201)],
)  # fmt: skip
def test_answers_that_name_no_row_give_no_hint(
    method: str, path: str, answer: Any, status: int
) -> None:
    """An answer without an id, a refused call, or an id that cannot be a key: no hint."""
    assert hints.read(call(method, path, answer, status), "default") is None
