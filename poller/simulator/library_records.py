"""The simulator's libraries and documents as records, and how the API shows them.

A document's processing is a planned timeline of ``(status, since)`` read off the clock:
``todo``, then ``in_progress``, then its outcome. ``Libraries`` (``libraries.py``) keeps
them and changes them.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import json
from typing import Any

from poller.simulator import lifecycle
from poller.simulator.errors import InvalidRequest
from poller.simulator.index import Key, Table

Json = dict[str, Any]

ACTIVE = ("todo", "in_progress")
OUTCOMES = ("done", "error", "missing_content")
QUEUED_FOR = 1.0
PROCESSING_FOR = 3.0
MAX_PAGE_SIZE = 100
OWNER_TYPES = ("Workspace", "User")
SORT_FIELDS = ("created_at", "name")


def page_token(key: Key) -> str:
    """The opaque ``next_page_token`` that continues after ``key``."""
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def token_key(token: str) -> Key:
    """The key a ``page_token`` names (``InvalidRequest`` for one this API did not give)."""
    try:
        created, seq, id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return (float(created), int(seq), str(id))
    except (ValueError, TypeError, binascii.Error):
        raise InvalidRequest(f"page_token {token!r} is not one this API gave") from None


def iso(moment: float) -> str:
    """An API date-time: ``2026-05-01T10:00:00.123456Z``."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Document:
    """One uploaded document and the plan of its current processing pass."""

    id: str
    seq: int
    library_id: str
    created_at: float
    name: str
    mime_type: str | None
    extension: str | None
    size: int
    hash: str
    uploaded_by: str
    timeline: list[tuple[str, float]]
    pages: int | None
    processed_before: float | None = None
    """When the pass before the current one ended (``last_processed_at`` meanwhile)."""
    tokens_before: int = 0

    @property
    def key(self) -> Key:
        return (self.created_at, self.seq, self.id)

    def status(self, now: float) -> str:
        return lifecycle.status_at(self.timeline, now)

    def last_processed_at(self, now: float) -> float | None:
        _status, at = self.timeline[-1]
        return at if now >= at else self.processed_before

    def tokens(self, now: float) -> int:
        if self.status(now) == "done":
            return self.tokens_before + max(1, self.size // 4)
        return self.tokens_before

    def view(self, now: float) -> Json:
        """A ``Document`` as ``GET …/documents/{id}`` shows it at ``now``."""
        status = self.status(now)
        processed = self.last_processed_at(now)
        done = status == "done"
        return {
            "id": self.id,
            "library_id": self.library_id,
            "hash": self.hash,
            "mime_type": self.mime_type,
            "extension": self.extension,
            "size": self.size,
            "name": self.name,
            "summary": f"What {self.name} is about, in a few lines." if done else None,
            "created_at": iso(self.created_at),
            "last_processed_at": None if processed is None else iso(processed),
            "number_of_pages": self.pages if done else None,
            "process_status": status,
            "uploaded_by_id": self.uploaded_by,
            "uploaded_by_type": "Workspace",
            "processing_status": status,
            "tokens_processing_total": self.tokens(now),
            "url": None,
            "attributes": None,
            "expires_at": None,
        }


@dataclasses.dataclass(slots=True, eq=False, kw_only=True)
class Library:
    """One library and its documents, kept in creation order."""

    id: str
    seq: int
    created_at: float
    updated_at: float
    name: str
    description: str | None
    owner_type: str
    owner_id: str | None
    documents: Table[Document] = dataclasses.field(default_factory=Table)
    by_hash: dict[str, str] = dataclasses.field(default_factory=dict)
    size: int = 0
    activity: bool = False
    """Made by the activity, which may delete it."""

    @property
    def key(self) -> Key:
        return (self.created_at, self.seq, self.id)

    def view(self) -> Json:
        """A ``Library`` as ``GET /v1/libraries/{id}`` shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "owner_id": self.owner_id,
            "owner_type": self.owner_type,
            "total_size": self.size,
            "nb_documents": len(self.documents),
            "chunk_size": None,
            "description": self.description,
        }


def plan_pass(at: float, queued: float, working: float, outcome: str) -> list[tuple[str, float]]:
    """The timeline of a processing pass starting at ``at``."""
    return [("todo", at), ("in_progress", at + queued), (outcome, at + queued + working)]
