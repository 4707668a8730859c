"""The rules of the ``libraries`` source, as plain functions over plain data.

One source holds both kinds in the snapshot: a library under its id, a document under
``<library id>/<document id>`` — so a library's documents are the keys with its prefix,
and deleting a library's rows needs no lookup.

- A document is *active* while its ``process_status`` is ``todo``, ``in_progress`` or
  ``waiting_for_capacity``; ``done`` is ``library_document.processed``, ``error`` and
  ``missing_content`` are ``library_document.failed``; ``noop`` and ``self_managed`` are
  settled without an outcome event. (``processing_status`` is deprecated: never read.)
- **Passes.** A document can be processed more than once (``…/reprocess``). Poller counts
  the passes it sees in the document's snapshot row (``_pass``): a new pass begins when a
  settled document is active again, or settles again with another status or another
  ``last_processed_at`` (a reprocess that began and ended between two polls). An outcome's
  event id carries its pass, so a reprocess gets a new id; the count is written in the same
  transaction as the event, so the same outcome detected again after a crash keeps its id.
- **What was read.** A library's row keeps, beside the API's fields, the
  ``(updated_at, nb_documents, total_size)`` its documents were last read at (``_read``):
  when the listing shows other values, its documents are read again.

Keys starting with ``_`` are poller's own; every other key of a row is the API's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from poller import catalog
from poller.diff import DiffResult, diff, event_for
from poller.model import Event, Resource
from poller.sources import LIBRARIES

ACTIVE = frozenset({"todo", "in_progress", "waiting_for_capacity"})
"""ProcessStatus values of a document still being processed."""
OUTCOMES: Mapping[str, str] = {"done": "processed", "error": "failed", "missing_content": "failed"}
"""ProcessStatus values that end a pass with an event, and the event's action."""
DOCUMENT = "library_document"
DOCUMENT_TYPES = tuple(f"{DOCUMENT}.{a}" for a in ("uploaded", "processed", "failed", "deleted"))
PASS = "_pass"
READ = "_read"

LIBRARY_FIELDS = ("id", "name", "description", "owner_type", "created_at", "updated_at",
                  "nb_documents", "total_size")  # fmt: skip
DOCUMENT_FIELDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(str(s[0]) for s in catalog.selectors(DOCUMENT_TYPES)),
            "process_status",
            "last_processed_at",
        ]
    )
)


def document_key(library_id: str, document_id: str) -> str:
    return f"{library_id}/{document_id}"


def split(key: str) -> tuple[str, str | None]:
    """``(library id, document id)`` of a key; ``None`` for a library's own key."""
    library_id, slash, document_id = key.partition("/")
    return library_id, document_id if slash else None


def is_document(key: str) -> bool:
    return "/" in key


def unix(value: Any) -> int | None:
    """Whole unix seconds of an API date-time (``2026-05-01T10:00:00.123Z``), if it is one."""
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _id(obj: Mapping[str, Any], what: str) -> str:
    rid = obj.get("id")
    if not isinstance(rid, str) or not rid or "/" in rid:
        raise ValueError(f"{what} without a usable string id")
    return rid


def library(obj: Mapping[str, Any]) -> Resource:
    """The remembered form of a ``Library`` (raises ``ValueError`` without an id)."""
    return Resource(
        id=_id(obj, "library"),
        status=None,
        created=unix(obj.get("created_at")),
        data={k: obj[k] for k in LIBRARY_FIELDS if k in obj},
    )


def document(obj: Mapping[str, Any], library_id: str | None = None) -> Resource:
    """The remembered form of a ``Document`` of ``library_id`` (default: its own field)."""
    owner = library_id if library_id is not None else obj.get("library_id")
    if not isinstance(owner, str) or not owner or "/" in owner:
        raise ValueError("document without a usable library_id")
    status = obj.get("process_status")
    return Resource(
        id=document_key(owner, _id(obj, "document")),
        status=status if isinstance(status, str) else None,
        created=unix(obj.get("created_at")),
        data={k: obj[k] for k in DOCUMENT_FIELDS if k in obj},
    )


def with_status(row: Resource, status: str) -> Resource:
    """A document's row with the ``process_status`` a ``…/status`` answer gave."""
    return dataclasses.replace(row, status=status, data={**row.data, "process_status": status})


def fingerprint(row: Resource) -> list[Any]:
    """What tells that a library's documents changed: ``[updated_at, nb_documents, total_size]``."""
    return [row.data.get("updated_at"), row.data.get("nb_documents"), row.data.get("total_size")]


def with_read(listed: Resource, read: list[Any] | None) -> Resource:
    """A library's row as listed, remembering the fingerprint its documents were read at."""
    data = {k: v for k, v in listed.data.items() if k != READ}
    if read is not None:
        data[READ] = read
    return dataclasses.replace(listed, data=data)


def read_at(row: Resource | None) -> list[Any] | None:
    """The fingerprint a library's documents were last read at; ``None``: never read whole."""
    if row is None:
        return None
    value = row.data.get(READ)
    return list(value) if isinstance(value, list) else None


def is_active(row: Resource) -> bool:
    """A document still processing (the snapshot's ``active`` flag)."""
    return is_document(row.id) and row.status in ACTIVE


def outcome_type(status: str | None) -> str | None:
    action = OUTCOMES.get(status or "")
    return f"{DOCUMENT}.{action}" if action else None


def passes(row: Resource) -> int:
    value = row.data.get(PASS, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def next_pass(previous: Resource, current: Resource) -> int:
    """The pass ``current`` belongs to, given the remembered ``previous`` (see the module)."""
    count = passes(previous)
    if previous.status in ACTIVE:
        return count
    if current.status in ACTIVE:
        return count + 1
    settled = (previous.status, previous.data.get("last_processed_at"))
    if (current.status, current.data.get("last_processed_at")) != settled:
        return count + 1
    return count


def with_pass(row: Resource, count: int) -> Resource:
    return dataclasses.replace(row, data={**row.data, PASS: count})


def document_event(
    event_type: str, row: Resource, *, workspace: str, now: dt.datetime, count: int | None = None
) -> Event:
    """The event ``event_type`` about a document, with its stable id.

    The id depends on the workspace, the type, the document's id and creation time, and
    for an outcome on its pass (``count``): never on when it was detected.
    """
    _, document_id = split(row.id)
    assert document_id is not None
    parts: list[str | int | None] = [workspace, event_type, document_id, row.created]
    if count is not None:
        parts.append(f"pass {count}")
    return Event(
        id=catalog.event_id(*parts),
        type=event_type,
        workspace=workspace,
        resource_id=document_id,
        timestamp=now,
        data=catalog.payload(event_type, row.data),
    )


def _order(row: Resource) -> tuple[int, str]:
    return (row.created if row.created is not None else 0, row.id)


def documents(
    before: Mapping[str, Resource],
    seen: Iterable[Resource],
    *,
    gone: Collection[str] = (),
    announce: bool = True,
    workspace: str,
    now: dt.datetime,
) -> DiffResult:
    """What the documents ``seen`` and the keys ``gone`` change in a snapshot holding ``before``.

    - a document not in ``before`` is new: ``library_document.uploaded``, followed by its
      outcome (pass 0) when it is already settled with one;
    - a remembered one whose pass ends with an outcome gets that outcome, once per pass;
    - a key in ``gone`` is dropped, with ``library_document.deleted``;
    - ``announce=False`` (a silent baseline) records everything and announces nothing.
    """
    upserts: list[Resource] = []
    events: list[Event] = []

    def emit(event_type: str, row: Resource, count: int | None = None) -> None:
        if announce:
            events.append(
                document_event(event_type, row, workspace=workspace, now=now, count=count)
            )

    observed = sorted(seen, key=_order)
    for current in observed:
        previous = before.get(current.id)
        outcome = outcome_type(current.status)
        if previous is None:
            row = with_pass(current, 0)
            upserts.append(row)
            emit(f"{DOCUMENT}.uploaded", row)
            if outcome:
                emit(outcome, row, 0)
            continue
        count = next_pass(previous, current)
        row = with_pass(current, count)
        if row == previous:
            continue
        upserts.append(row)
        if outcome and (previous.status in ACTIVE or count != passes(previous)):
            emit(outcome, row, count)

    seen_keys = {r.id for r in observed}
    removals: list[str] = []
    dropped = sorted((before[k] for k in gone if k in before and k not in seen_keys), key=_order)
    for previous in dropped:
        removals.append(previous.id)
        emit(f"{DOCUMENT}.deleted", previous)
    return DiffResult(tuple(upserts), tuple(removals), tuple(events))


def changes(
    before: Mapping[str, Resource],
    seen: Iterable[Resource],
    *,
    gone: Collection[str] = (),
    announce: bool = True,
    workspace: str,
    now: dt.datetime,
) -> DiffResult:
    """Libraries and documents at once: ``diff`` for the libraries, ``documents`` for the rest.

    Events come in the order a receiver can act on: libraries created, then what happened
    to documents (a deleted library's documents included), then libraries deleted.
    """
    rows = list(seen)
    libraries = diff(
        LIBRARIES,
        before,
        [r for r in rows if not is_document(r.id)],
        gone=[k for k in gone if not is_document(k)],
        announce=announce,
        workspace=workspace,
        now=now,
    )
    docs = documents(
        before,
        [r for r in rows if is_document(r.id)],
        gone=[k for k in gone if is_document(k)],
        announce=announce,
        workspace=workspace,
        now=now,
    )
    deleted = f"{LIBRARIES.resource}.{LIBRARIES.deleted_action}"
    events = (
        *(e for e in libraries.events if e.type != deleted),
        *docs.events,
        *(e for e in libraries.events if e.type == deleted),
    )
    return DiffResult(
        upserts=(*libraries.upserts, *docs.upserts),
        removals=(*docs.removals, *libraries.removals),
        events=events,
    )


def library_event(event_type: str, row: Resource, *, workspace: str, now: dt.datetime) -> Event:
    """A library's event, as ``diff`` gives it (the hints' way to the same id)."""
    return event_for(LIBRARIES, event_type, row, workspace=workspace, now=now)
