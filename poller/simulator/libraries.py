"""The simulator's libraries: ``/v1/libraries`` and the processing of their documents.

The records, their rules and the activity's part in them live in ``shelves.Shelves``;
this family locks, settles (the world, then the libraries' own activity ticks) and calls
in, as every family does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from poller.simulator import shelves
from poller.simulator.core import SimulatorCore
from poller.simulator.library_records import MAX_PAGE_SIZE, Json


class Libraries(SimulatorCore):
    """Libraries (list, create, get, delete) and their documents (list, upload, get,
    status, reprocess, delete), with controls to move a document's processing along."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._shelves = shelves.Shelves(seed=options.get("seed"), activity=self._world.activity)
        if options.get("scenario") == "demo":
            self._shelves.demo(self._world.now())

    @contextmanager
    def _moment(self) -> Iterator[float]:
        """Hold the lock over a settled workspace, libraries included; yields the moment."""
        with self._lock:
            now = self._world.settle()
            self._shelves.settle(now)
            yield now

    def reset(self) -> Json:
        """Forget every resource (base models excepted), library, fault and request count."""
        answer = super().reset()
        with self._lock:
            self._shelves.clear()
        return answer

    # ------------------------------------------------------------ libraries

    @property
    def libraries_available(self) -> bool:
        """Whether ``/v1/libraries`` exists (``False``: every path answers 404)."""
        return self._shelves.available

    def set_libraries_available(self, available: bool) -> Json:
        """Make ``/v1/libraries...`` exist or answer 404, as for a workspace without them."""
        with self._lock:
            self._shelves.available = available
            return {"available": available}

    def list_libraries(
        self,
        *,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
        page: int | None = None,
        search: str | None = None,
    ) -> Json:
        """``GET /v1/libraries``: a ``ListLibrariesResponse``, newest first."""
        with self._moment() as now:
            return self._shelves.list_libraries(
                now, page_size=page_size, page_token=page_token, page=page, search=search
            )

    def create_library(
        self,
        *,
        name: str = "Knowledge base",
        description: str | None = None,
        owner_type: str | None = None,
        created_at: float | None = None,
    ) -> Json:
        """``POST /v1/libraries`` (also ``/_sim/libraries``): a new, empty ``Library``."""
        with self._moment() as now:
            return self._shelves.create_library(
                now,
                name=name,
                description=description,
                owner_type=owner_type,
                created_at=created_at,
            )

    def get_library(self, id: str) -> Json:
        """``GET /v1/libraries/{id}``: a ``Library``."""
        with self._moment() as now:
            return self._shelves.get_library(now, id)

    def delete_library(self, id: str) -> Json:
        """``DELETE /v1/libraries/{id}``: the deleted ``Library``, its documents gone with it."""
        with self._moment() as now:
            return self._shelves.delete_library(now, id)

    # ------------------------------------------------------------ documents

    def list_documents(
        self,
        library_id: str,
        *,
        page: int = 0,
        page_size: int = MAX_PAGE_SIZE,
        search: str | None = None,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> Json:
        """``GET /v1/libraries/{id}/documents``: a ``ListDocumentsResponse``."""
        with self._moment() as now:
            return self._shelves.list_documents(
                now,
                library_id,
                page=page,
                page_size=page_size,
                search=search,
                sort_by=sort_by,
                sort_order=sort_order,
            )

    def upload_document(
        self,
        library_id: str,
        filename: str,
        content: bytes,
        *,
        mime_type: str | None = None,
        outcome: str = "done",
        queued_for: float | None = None,
        processing_for: float | None = None,
        created_at: float | None = None,
    ) -> tuple[Json, bool]:
        """``POST /v1/libraries/{id}/documents``: ``(Document, created)``; the same content
        again answers the document already there (``created`` false, the API's 200)."""
        with self._moment() as now:
            return self._shelves.upload(
                now,
                library_id,
                filename,
                content,
                mime_type=mime_type,
                outcome=outcome,
                queued_for=queued_for,
                processing_for=processing_for,
                created_at=created_at,
            )

    def add_document(
        self,
        library_id: str,
        *,
        name: str | None = None,
        size: int | None = None,
        mime_type: str | None = None,
        outcome: str = "done",
        queued_for: float | None = None,
        processing_for: float | None = None,
        created_at: float | None = None,
    ) -> Json:
        """Upload a made-up document (``/_sim/libraries/{id}/documents``)."""
        with self._moment() as now:
            return self._shelves.add_document(
                now,
                library_id,
                name=name,
                size=size,
                mime_type=mime_type,
                outcome=outcome,
                queued_for=queued_for,
                processing_for=processing_for,
                created_at=created_at,
            )

    def get_document(self, library_id: str, id: str) -> Json:
        """``GET /v1/libraries/{id}/documents/{document_id}``: a ``Document``."""
        with self._moment() as now:
            return self._shelves.get_document(now, library_id, id)

    def document_status(self, library_id: str, id: str) -> Json:
        """``GET …/documents/{document_id}/status``: a ``ProcessingStatus``."""
        with self._moment() as now:
            return self._shelves.status(now, library_id, id)

    def delete_document(self, library_id: str, id: str) -> None:
        """``DELETE …/documents/{document_id}``."""
        with self._moment() as now:
            self._shelves.delete_document(now, library_id, id)

    def reprocess_document(
        self,
        library_id: str,
        id: str,
        *,
        outcome: str = "done",
        queued_for: float | None = None,
        processing_for: float | None = None,
    ) -> None:
        """``POST …/documents/{document_id}/reprocess``: a new pass from now."""
        with self._moment() as now:
            self._shelves.reprocess(
                now,
                library_id,
                id,
                outcome=outcome,
                queued_for=queued_for,
                processing_for=processing_for,
            )

    def advance_document(self, library_id: str, id: str, status: str | None = None) -> Json:
        """End a document's current phase now: on to its next status, or to ``status``
        (``in_progress`` or an outcome; ``error`` and ``missing_content`` fail the pass)."""
        with self._moment() as now:
            return self._shelves.advance(now, library_id, id, status)

    # ---------------------------------------------------------------- many

    def bulk_libraries(
        self, *, libraries: int = 0, documents: int = 0, span: float = 30 * 86400.0
    ) -> Json:
        """Add ``libraries`` libraries of ``documents`` processed documents each, made over
        the past ``span`` seconds."""
        with self._moment() as now:
            return self._shelves.bulk(now, libraries=libraries, documents=documents, span=span)

    def library_counts(self) -> Json:
        """How many libraries and documents there are."""
        with self._moment():
            return self._shelves.counts()
