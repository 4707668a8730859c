"""What a call through poller says about a library or a document, read as polling would.

- ``POST /libraries`` (the new ``Library``): ``library.created`` and its row; its
  documents are read at the next poll;
- ``DELETE /libraries/{id}`` (the ``Library``, or 204): the library and every document
  the snapshot holds in it are dropped: ``library_document.deleted`` each, then
  ``library.deleted``;
- ``POST /libraries/{id}/documents`` (the ``Document``, new or the one with the same
  content): ``library_document.uploaded`` (and its outcome if it is settled already), its
  row — still processing, so the source polls at its active interval;
- ``DELETE /libraries/{id}/documents/{document_id}`` (204): ``library_document.deleted``;
- ``POST /libraries/{id}/documents/{document_id}/reprocess`` (204): a new pass opens in
  the snapshot (the row back to ``todo``), without an event of its own; the source polls
  at its active interval and announces the pass's outcome with the new pass's id.

Every event has the id polling would give it, and the rows written with it keep the next
poll from announcing it again. A hint adds what was created and moves or drops only what
the snapshot knows; anything else is left to polling.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from poller.diff import DiffResult
from poller.libraries import core
from poller.model import Event, Resource
from poller.sources import LIBRARIES

if TYPE_CHECKING:
    from poller.store.sql import Store

CREATED, CHANGED, DELETED = "created", "changed", "deleted"
_LIBRARY = re.compile(r"/libraries/(?P<library>[^/?]+)")
_DOCUMENT = re.compile(r"/libraries/(?P<library>[^/?]+)/documents/(?P<document>[^/?]+)")


@dataclasses.dataclass(frozen=True, slots=True)
class Change:
    """One call's change to a library or a document: what the snapshot is to make of it."""

    kind: str
    key: str
    """The snapshot key: a library's id, or ``<library id>/<document id>``."""
    resource: Resource | None = None
    """The row as the answer shows it; ``None`` for a deletion or a reprocess."""

    @property
    def resource_id(self) -> str:
        """The API's id of what changed (a document's own id, not its key)."""
        library_id, document_id = core.split(self.key)
        return document_id if document_id is not None else library_id

    @property
    def joins_active_set(self) -> bool:
        """A document processing from now: the source is polled at its active interval."""
        if self.kind == CHANGED:
            return True
        return self.resource is not None and core.is_active(self.resource)

    def record(self, store: Store, workspace: str, at: dt.datetime) -> list[Event]:
        """Write the change's rows and events in one transaction; the events new to it."""
        keys = [self.key]
        if self.kind == DELETED and not core.is_document(self.key):
            under = core.document_key(self.key, "")
            keys.extend(store.ids_under(workspace, LIBRARIES.name, under))
        return store.commit_hint(
            workspace,
            LIBRARIES.name,
            keys,
            lambda before: self.plan(before, workspace=workspace, at=at),
            at,
            active=core.is_active,
        )

    def plan(
        self, before: Mapping[str, Resource], *, workspace: str, at: dt.datetime
    ) -> DiffResult:
        """What the change makes of a snapshot holding ``before``, as a poll would."""
        known = before.get(self.key)
        if self.kind == DELETED:
            if known is None:
                return DiffResult()
            gone = [k for k in before if k == self.key or k.startswith(self.key + "/")]
            return core.changes(before, [], gone=gone, workspace=workspace, now=at)
        if self.kind == CHANGED:
            if known is None or core.is_active(known):
                return DiffResult()
            reopened = core.with_status(known, "todo")
            return DiffResult(upserts=(core.with_pass(reopened, core.passes(known) + 1),))
        assert self.resource is not None
        if known is not None and not core.is_document(self.key):
            return DiffResult()  # a library already known: its row says what was read
        return core.changes(before, [self.resource], workspace=workspace, now=at)


def read(method: str, path: str, answer: Any) -> Change | None:
    """The change a 2xx answer to ``method path`` (under ``/v1``, as sent) says, or ``None``.

    ``answer`` is the decoded JSON object, or ``None`` when the answer had no body.
    """
    try:
        return _read(method.upper(), path.partition("?")[0].rstrip("/"), answer)
    except ValueError:
        return None


def _read(method: str, bare: str, answer: Any) -> Change | None:
    if method == "POST" and bare == "/libraries":
        return _created(answer, library=True)
    document = _DOCUMENT.fullmatch(bare.removesuffix("/reprocess"))
    if document is not None:
        key = core.document_key(_id(document["library"]), _id(document["document"]))
        if method == "POST" and bare.endswith("/reprocess"):
            return Change(CHANGED, key)
        if method == "DELETE" and not bare.endswith("/reprocess"):
            return Change(DELETED, key)
        return None
    if method == "POST" and (documents := re.fullmatch(r"(.+)/documents", bare)):
        library = _LIBRARY.fullmatch(documents[1])
        if library is None:
            return None
        return _created(answer, library=False, library_id=_id(library["library"]))
    library = _LIBRARY.fullmatch(bare)
    if method == "DELETE" and library is not None:
        return Change(DELETED, _id(library["library"]))
    return None


def _id(raw: str) -> str:
    """An id from the path, decoded; one holding ``/`` cannot name a row (``ValueError``)."""
    decoded = urllib.parse.unquote(raw)
    if "/" in decoded or not decoded:
        raise ValueError(f"no row has the id {decoded!r}")
    return decoded


def _created(answer: Any, *, library: bool, library_id: str | None = None) -> Change | None:
    if not isinstance(answer, dict):
        return None
    try:
        row = core.library(answer) if library else core.document(answer, library_id)
    except ValueError:
        return None
    return Change(CREATED, row.id, row)
