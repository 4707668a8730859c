"""Polling the ``libraries`` source: flat in documents, whatever the libraries hold.

Each poll lists the libraries (one request per hundred libraries, by ``page_token``),
then reads only what may have moved:

- a library whose ``updated_at``, ``nb_documents`` or ``total_size`` differs from when its
  documents were last read (or that is new) has its documents read newest first, until
  the read has passed the first document poller knows and the count adds up (what it
  knows plus what is new makes ``total_items``): one page for an upload. When the count
  does not add up, something was deleted, and the library is read to its end;
- a document still processing is checked by ``…/status``, one request each (or, when a
  library holds more of them than it has pages, by reading that library whole); one that
  settled is read once more, for its payload;
- at every reconcile (and the first poll, a silent baseline) every library is read whole.

A document absent from its library's complete listing, or a library absent from the
complete library list, is deleted only when a direct GET answers 404, under the same
mass-deletion guard as every source (``polling.guard``). A library confirmed deleted takes
its documents with it: each gets ``library_document.deleted``, then the library
``library.deleted``. A quiet workspace costs one request per poll.

Every write of a poll goes through ``Store.commit_poll``'s one transaction, begun once
everything was fetched; documents read page by page are staged meanwhile.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable, Collection, Iterable
from typing import Any

import structlog

from poller import listorder, staging, utils
from poller.exceptions import ApiError, GarbledError, NotFoundError
from poller.libraries import core
from poller.mistral import paging
from poller.mistral.client import MistralClient
from poller.model import Event, Resource, SourceState
from poller.polling import (
    CONFIRM_CONCURRENCY,
    PollReport,
    Settings,
    confirm,
    guard,
    reconciled,
    settled,
)
from poller.sources import SourceSpec
from poller.store.sql import Fence, PollCommit, Store

log = structlog.get_logger("poller.libraries")

WHOLE, HEAD = "whole", "head"
DOCUMENT_ORDER = {"sort_by": "created_at", "sort_order": "desc"}


def library_path(library_id: str) -> str:
    return f"/libraries/{urllib.parse.quote(library_id, safe='')}"


def document_path(key: str) -> str:
    library_id, document_id = core.split(key)
    assert document_id is not None
    return f"{library_path(library_id)}/documents/{urllib.parse.quote(document_id, safe='')}"


@dataclasses.dataclass(frozen=True, slots=True)
class Read:
    """What reading one library's documents came to."""

    seen: frozenset[str]
    """Keys of the documents listed."""
    whole: bool = False
    """Every document was listed: the ones not listed may be judged deleted."""
    known: bool = False
    """Every document is known now (listed whole, or a head whose count adds up)."""
    vanished: bool = False
    """The library answered 404 meanwhile: it is judged by the next library list."""


@dataclasses.dataclass
class _Poll:
    """The scratch state of one poll."""

    state: SourceState
    now: dt.datetime
    full: bool
    staged: staging.Staging
    events: list[Event] = dataclasses.field(default_factory=list)
    covered: set[str] = dataclasses.field(default_factory=set)
    missing: list[str] = dataclasses.field(default_factory=list)
    complete: bool = True

    @property
    def baseline(self) -> bool:
        return not self.state.baselined


def _by_library(keys: Iterable[str]) -> tuple[set[str], dict[str, set[str]]]:
    """(library keys, document keys by library) of snapshot keys."""
    libraries: set[str] = set()
    documents: dict[str, set[str]] = {}
    for key in keys:
        library_id, document_id = core.split(key)
        if document_id is None:
            libraries.add(key)
        else:
            documents.setdefault(library_id, set()).add(key)
    return libraries, documents


class LibraryPoller:
    """Polls the libraries of one workspace and the processing of their documents."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        client: MistralClient,
        store: Store,
        settings: Settings,
        clock: Callable[[], dt.datetime] = utils.utcnow,
        fence: Fence | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.store = store
        self.settings = settings
        self.clock = clock
        self.fence = fence
        """First call of each poll's write transaction (a replica's lease check), if any."""
        self.log = log.bind(workspace=settings.workspace, source=spec.name)
        self.page_size = min(client.page_size, paging.MAX_PAGE_SIZE)

    @property
    def workspace(self) -> str:
        return self.settings.workspace

    async def poll(self) -> PollReport:
        """One poll; raises ``ApiError`` when the API gave nothing usable (nothing is written).

        Only the library list's own 404 escapes as ``NotFoundError`` (the source is then
        switched off); a library or a document that answers 404 is a deletion to judge.
        """
        now = self.clock()
        state = await asyncio.to_thread(self.store.source_state, self.workspace, self.spec.name)
        before = self.client.requests
        with staging.Staging() as staged:
            full = not reconciled(self.settings, state, now)
            report = await self._poll(_Poll(state, now, full, staged))
        return dataclasses.replace(report, requests=self.client.requests - before)

    async def _poll(self, p: _Poll) -> PollReport:
        listed, listing_complete = await self._libraries()
        stored = await asyncio.to_thread(self.store.top_ids, self.workspace, self.spec.name)
        rows = await self._load([k for k in listed if k in stored])
        active = await asyncio.to_thread(self.store.active_ids, self.workspace, self.spec.name)
        _, active_by = _by_library(active)
        reads: dict[str, tuple[list[Any] | None, list[Any] | None]] = {}
        """Library id → (fingerprint its documents were read at before, and now)."""
        for library in sorted(listed.values(), key=lambda r: (r.created or 0, r.id)):
            row = rows.get(library.id)
            mode = self._mode(library, row, len(active_by.get(library.id, ())), p.full)
            read_at = core.read_at(row)
            reads[library.id] = (read_at, read_at)
            if mode is None:
                continue
            known = await self._documents_of(library.id)
            read = await self._read(p, library.id, mode, known)
            if read.vanished:
                del reads[library.id]
                continue
            p.covered.update(read.seen)
            if read.whole:
                p.missing.extend(sorted(known - read.seen))
            if read.known:
                reads[library.id] = (read_at, core.fingerprint(library))
            else:
                p.complete = False
        if p.baseline and not (listing_complete and p.complete):
            raise GarbledError(
                "the first listing of libraries and documents came back incomplete; "
                "the baseline is taken again at the next poll",
                method="GET",
                path=self.spec.list_path,
            )
        pending = [k for k in active if k not in p.covered and core.split(k)[0] in listed]
        checked = await self._statuses(p, pending)
        gone_libraries = sorted(stored - listed.keys()) if listing_complete else []
        holding = {core.split(k)[0] for k in p.missing}
        gone, found, held_since, held = await self._deletions(
            p, gone_libraries, listed=bool(listed), whole=listing_complete and p.complete
        )
        # a library whose missing documents are held is read again next poll, to judge them
        libraries = [
            core.with_read(listed[k], old if held and k in holding else new)
            for k, (old, new) in reads.items()
        ]
        seen = [*libraries, *checked, *found]
        before = await self._load([*(r.id for r in seen), *gone])
        result = core.changes(
            before,
            seen,
            gone=gone,
            announce=self.settings.emit_existing or not p.baseline,
            workspace=self.workspace,
            now=p.now,
        )
        created = f"{self.spec.resource}.{self.spec.created_action}"
        events = (
            *(e for e in result.events if e.type == created),
            *p.events,
            *(e for e in result.events if e.type != created),
        )
        commit = PollCommit(
            workspace=self.workspace,
            source=self.spec.name,
            result=dataclasses.replace(result, events=events),
            now=p.now,
            reconciled=p.full,
            held_since=held_since,
            held_count=held,
        )
        recorded = await settled(
            self.store.commit_poll,
            commit,
            active=core.is_active,
            staged=p.staged.chunks(),
            fence=self.fence,
        )
        if p.baseline:
            self.log.info("baseline_recorded", items=p.staged.count + len(seen))
        moving = await asyncio.to_thread(self.store.active_ids, self.workspace, self.spec.name)
        return PollReport(
            source=self.spec.name,
            mode="baseline" if p.baseline else "full" if p.full else "incremental",
            events=tuple(recorded),
            active=len(moving),
            requests=0,
            complete=listing_complete and p.complete,
            held=held,
        )

    async def _documents_of(self, library_id: str) -> set[str]:
        """The keys of a library's documents in the snapshot."""
        return await asyncio.to_thread(
            self.store.ids_under, self.workspace, self.spec.name, core.document_key(library_id, "")
        )

    async def _load(self, keys: Collection[str]) -> dict[str, Resource]:
        if not keys:
            return {}
        return await asyncio.to_thread(
            self.store.load_resources, self.workspace, self.spec.name, keys
        )

    # -- the library list --------------------------------------------------------------

    async def _libraries(self) -> tuple[dict[str, Resource], bool]:
        """Every library the list shows, and whether the list ran to its end."""
        pager = paging.CursorPages(self.client, self.spec.list_path, page_size=self.page_size)
        listed: dict[str, Resource] = {}
        async for page in pager:
            for item in page:
                try:
                    library = core.library(item)
                except ValueError as exc:
                    raise GarbledError(str(exc), method="GET", path=self.spec.list_path) from None
                listed[library.id] = library
        return listed, pager.complete

    def _mode(self, library: Resource, row: Resource | None, active: int, full: bool) -> str | None:
        """How a library's documents are read this poll: whole, from the head, or not."""
        read_at = core.read_at(row)
        if full or read_at is None:
            return WHOLE
        count = library.data.get("nb_documents")
        pages = max(1, -(-count // self.page_size)) if isinstance(count, int) else 1
        many = active > 0 and active >= pages
        if read_at != core.fingerprint(library):
            return WHOLE if many else HEAD
        return WHOLE if many else None

    # -- a library's documents ---------------------------------------------------------

    async def _read(self, p: _Poll, library_id: str, mode: str, known: set[str]) -> Read:
        """Read a library's documents newest first, diffing and staging them page by page.

        A head read stops once it passed every document as new as the first known one and
        the count adds up; otherwise it reads on to the end, like a whole read.
        """
        path = f"{library_path(library_id)}/documents"
        pager = paging.NumberedPages(
            self.client, path, params=DOCUMENT_ORDER, page_size=self.page_size
        )
        watch = listorder.OrderWatch()
        head = mode == HEAD
        seen: set[str] = set()
        new = 0
        first_known: int | None = None
        passed = False
        try:
            async for page in pager:
                docs = self._documents(page, library_id, path)
                watch.feed(r.created for r in docs)
                await self._diff_page(p, docs, known)
                for doc in docs:
                    seen.add(doc.id)
                    if first_known is not None and doc.created is not None:
                        passed = passed or doc.created < first_known
                    if doc.id not in known:
                        new += 1
                    elif first_known is None:
                        first_known = doc.created
                        head = head and doc.created is not None
                if head and not watch.keeps("newest"):
                    self.log.info(
                        "documents_out_of_order", library=library_id, consequence="read whole"
                    )
                    head = False
                if head and passed:
                    if listorder.balanced(pager.total, len(known), new):
                        return Read(frozenset(seen), known=True)
                    head = False
        except NotFoundError:
            self.log.info("library_vanished", library=library_id)
            return Read(frozenset(seen), vanished=True)
        if not pager.complete:
            self.log.warning(
                "listing_incomplete",
                library=library_id,
                total=pager.total,
                got=len(pager.seen),
                consequence="no deletions, read again next poll",
            )
        return Read(frozenset(seen), whole=pager.complete, known=pager.complete)

    def _documents(
        self, page: Iterable[dict[str, Any]], library_id: str, path: str
    ) -> list[Resource]:
        try:
            return [core.document(item, library_id) for item in page]
        except ValueError as exc:
            raise GarbledError(str(exc), method="GET", path=path) from None

    async def _diff_page(self, p: _Poll, docs: list[Resource], known: set[str]) -> None:
        before = await self._load([r.id for r in docs if r.id in known])
        result = core.documents(
            before,
            docs,
            announce=self.settings.emit_existing or not p.baseline,
            workspace=self.workspace,
            now=p.now,
        )
        p.staged.add(result.upserts)
        p.events.extend(result.events)

    # -- documents still processing ----------------------------------------------------

    async def _statuses(self, p: _Poll, keys: list[str]) -> list[Resource]:
        """``…/status`` of each document still processing that no read listed: the rows
        that moved (a settled one read again whole). A 404 makes it a deletion to judge."""
        rows = await self._load(keys)
        semaphore = asyncio.Semaphore(CONFIRM_CONCURRENCY)
        moved: list[Resource] = []

        async def one(key: str) -> None:
            row = rows.get(key)
            if row is None:
                return
            async with semaphore:
                try:
                    body = await self.client.request("GET", document_path(key) + "/status")
                    status = body.get("process_status") if isinstance(body, dict) else None
                    if not isinstance(status, str):
                        raise GarbledError(
                            "the answer has no process_status", method="GET", path=key
                        )
                    if status == row.status:
                        return
                    if status in core.ACTIVE:
                        moved.append(core.with_status(row, status))
                        return
                    item = await self.client.get_item(document_path(key))
                except NotFoundError:
                    item = None
                except ApiError as exc:
                    self.log.warning("status_failed", resource_id=key, error=str(exc))
                    return
            if item is None:
                p.missing.append(key)
            else:
                try:
                    moved.append(core.document(item, core.split(key)[0]))
                except ValueError:
                    self.log.warning("status_failed", resource_id=key, error="garbled document")

        await asyncio.gather(*(one(key) for key in keys))
        return moved

    # -- deletions ---------------------------------------------------------------------

    async def _deletions(
        self,
        p: _Poll,
        libraries: list[str],
        *,
        listed: bool,
        whole: bool,
    ) -> tuple[list[str], list[Resource], dt.datetime | None, int]:
        """(keys really gone, rows that exist after all, held_since, held).

        A library confirmed gone brings every key of its documents. What is held is
        looked at again by the next poll (a library missing from the list, a library whose
        documents are missing, read again); one that finds nothing missing, having read
        whole what it read, releases them.
        """
        documents = {k: await self._documents_of(k) for k in libraries}
        doomed = len(libraries) + sum(len(keys) for keys in documents.values()) + len(p.missing)
        if not doomed and not whole:
            return [], [], p.state.held_since, p.state.held_count
        tracked = 0
        if doomed:
            tracked, _ = await asyncio.to_thread(self.store.counts, self.workspace, self.spec.name)
        go, held_since, held = guard(
            doomed,
            tracked,
            listed=listed,
            state=p.state,
            now=p.now,
            settings=self.settings,
            log=self.log,
        )
        if not go:
            return [], [], held_since, held
        paths = {k: library_path(k) for k in libraries}
        paths.update((k, document_path(k)) for k in p.missing)
        answered, bodies = await confirm(self.client, paths, self.log)
        gone: list[str] = []
        for key in answered:
            gone.append(key)
            if not core.is_document(key):
                gone.extend(sorted(documents.get(key, ())))
        found: list[Resource] = []
        previous = await self._load([k for k in bodies if not core.is_document(k)])
        for key, body in bodies.items():
            try:
                if core.is_document(key):
                    found.append(core.document(body, core.split(key)[0]))
                else:
                    found.append(
                        core.with_read(core.library(body), core.read_at(previous.get(key)))
                    )
            except ValueError:
                self.log.warning("confirm_failed", resource_id=key, error="garbled answer")
        return sorted(set(gone)), found, None, 0
