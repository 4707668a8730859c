"""Libraries and their documents in the simulated workspace: records, lifecycles, activity.

Not thread-safe: the ``Libraries`` family of the simulator (``libraries.py``) locks, settles
and calls in with the moment it settled at (``now``). A document's processing is a planned
timeline read off the clock, as a job's is: ``todo`` for ``queued_for`` seconds,
``in_progress`` for ``processing_for``, then its outcome (``done``, ``error`` or
``missing_content``). ``reprocess`` plans a new pass from now. ``last_processed_at`` is when
the latest finished pass ended. A library's ``updated_at`` moves when it is created, or a
document is uploaded to or deleted from it; processing leaves it alone (so does a
reprocess).

The library list pages by an opaque ``next_page_token`` (the deprecated ``page`` still
works and answers a ``pagination``); a library's documents page by ``page`` with a
``PaginationInfo``. ``available=False`` answers 404 on every ``/v1/libraries`` path, as a
workspace without the API would. The simulator's activity ticks play here too (``settle``).
"""

from __future__ import annotations

import hashlib
import mimetypes
import random
from collections.abc import Callable

from poller.simulator import activity as act
from poller.simulator import library_records as records
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.index import Key, Page, Table, select
from poller.simulator.library_records import (
    MAX_PAGE_SIZE,
    OUTCOMES,
    OWNER_TYPES,
    PROCESSING_FOR,
    QUEUED_FOR,
    SORT_FIELDS,
    Document,
    Json,
    Library,
    plan_pass,
    token_key,
)

MIN_AGE_TO_DELETE = 5.0
"""Activity deletes documents and libraries only once they are this old."""
CYCLE = 7
MAX_CATCH_UP_TICKS = 1000
# the version (4) and variant (RFC 4122) bits of a uuid4
_UUID_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise InvalidRequest(f"{what} {value!r} is invalid; use one of {', '.join(allowed)}")


def _page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidRequest(f"page_size must be between 1 and {MAX_PAGE_SIZE}")


class Shelves:
    """Every library of the workspace, and the activity's part in them."""

    def __init__(self, *, seed: int | None, activity: act.Activity) -> None:
        self.activity = activity
        """The simulator's activity: when it is on, its ticks play here too."""
        self.rng = random.Random(None if seed is None else seed + 1)
        self.available = True
        self.table: Table[Library] = Table()
        self._seq = 0
        self._user = self._new_id()
        self._played: tuple[float, int] = (0.0, 0)

    # ------------------------------------------------------------- helpers

    def _new_id(self) -> str:
        """A uuid4 string drawn from the seeded generator."""
        bits = self.rng.getrandbits(128) & _UUID_CLEAR | _UUID4_SET
        h = f"{bits:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _library(self, id: str) -> Library:
        if not self.available:
            raise NotFound("Not Found")
        found = self.table.get(id)
        if found is None:
            raise NotFound(f"Library {id} not found")
        return found

    def _document(self, library_id: str, id: str) -> tuple[Library, Document]:
        lib = self._library(library_id)
        doc = lib.documents.get(id)
        if doc is None:
            raise NotFound(f"Document {id} not found in library {library_id}")
        return lib, doc

    def _check_available(self) -> None:
        if not self.available:
            raise NotFound("Not Found")

    # ------------------------------------------------------------ libraries

    def list_libraries(
        self,
        now: float,
        *,
        page_size: int = MAX_PAGE_SIZE,
        page_token: str | None = None,
        page: int | None = None,
        search: str | None = None,
    ) -> Json:
        """``GET /v1/libraries``: a ``ListLibrariesResponse``, newest first."""
        _page_size(page_size)
        self._check_available()
        keep = None
        if search:
            needle = search.lower()

            def keep(id: str) -> bool:
                return needle in self.table.records[id].name.lower()

        if page_token is not None:
            before = token_key(page_token)
            found = select([self.table.order], offset=0, limit=len(self.table) or 1, keep=keep)
            keys = [self.table.records[i].key for i in found.ids]
            ids = [k[2] for k in keys if k < before][:page_size]
            chosen = Page(ids, found.total)
        else:
            offset = (page or 0) * page_size
            chosen = select([self.table.order], offset=offset, limit=page_size, keep=keep)
        data = [self.table.records[i].view() for i in chosen.ids]
        last = self.table.records[chosen.ids[-1]].key if chosen.ids else None
        remaining = self._after(last, keep) if last is not None else 0
        answer: Json = {
            "data": data,
            "next_page_token": records.page_token(last) if last and remaining else None,
        }
        if page is not None:
            pages = -(-chosen.total // page_size)
            answer["pagination"] = {
                "total_items": chosen.total,
                "total_pages": pages,
                "current_page": page,
                "page_size": page_size,
                "has_more": page + 1 < pages,
            }
        return answer

    def _after(self, last: Key, keep: Callable[[str], bool] | None) -> int:
        """How many libraries come after ``last`` in the newest-first order."""
        return sum(1 for k in self.table.order.keys if k < last and (keep is None or keep(k[2])))

    def create_library(
        self,
        now: float,
        *,
        name: str = "Knowledge base",
        description: str | None = None,
        owner_type: str | None = None,
        created_at: float | None = None,
        activity: bool = False,
    ) -> Json:
        """``POST /v1/libraries`` (also ``/_sim/libraries``): a new, empty ``Library``."""
        _check(owner_type or "Workspace", OWNER_TYPES, "owner_type")
        self._check_available()
        owner = owner_type or "Workspace"
        return self._create(name, description, owner, created_at, now, activity).view()

    def _create(
        self,
        name: str,
        description: str | None,
        owner_type: str,
        created_at: float | None,
        now: float,
        activity: bool = False,
    ) -> Library:
        at = now if created_at is None else float(created_at)
        lib = Library(
            id=self._new_id(),
            seq=self._next_seq(),
            created_at=at,
            updated_at=at,
            name=name,
            description=description,
            owner_type=owner_type,
            owner_id=self._user if owner_type == "User" else None,
            activity=activity,
        )
        self.table.add(lib)
        return lib

    def get_library(self, now: float, id: str) -> Json:
        """``GET /v1/libraries/{id}``: a ``Library``."""
        return self._library(id).view()

    def delete_library(self, now: float, id: str) -> Json:
        """``DELETE /v1/libraries/{id}``: the deleted ``Library``, its documents gone with it."""
        lib = self._library(id)
        self.table.remove(id)
        return lib.view()

    # ------------------------------------------------------------ documents

    def list_documents(
        self,
        now: float,
        library_id: str,
        *,
        page: int = 0,
        page_size: int = MAX_PAGE_SIZE,
        search: str | None = None,
        sort_by: str = "created_at",
        sort_order: str = "desc",
    ) -> Json:
        """``GET /v1/libraries/{id}/documents``: a ``ListDocumentsResponse``."""
        _page_size(page_size)
        if page < 0:
            raise InvalidRequest("page must be 0 or more")
        _check(sort_by, SORT_FIELDS, "sort_by")
        _check(sort_order, ("asc", "desc"), "sort_order")
        table = self._library(library_id).documents
        keep = None
        if search:
            needle = search.lower()

            def keep(id: str) -> bool:
                return needle in table.records[id].name.lower()

        newest = sort_order == "desc"
        if sort_by == "created_at":
            found = select(
                [table.order],
                offset=page * page_size,
                limit=page_size,
                newest_first=newest,
                keep=keep,
            )
            ids, total = found.ids, found.total
        else:
            every = [i for i in table.records if keep is None or keep(i)]
            every.sort(key=lambda i: (table.records[i].name, i), reverse=newest)
            ids, total = every[page * page_size : (page + 1) * page_size], len(every)
        pages = -(-total // page_size)
        return {
            "pagination": {
                "total_items": total,
                "total_pages": pages,
                "current_page": page,
                "page_size": page_size,
                "has_more": page + 1 < pages,
            },
            "data": [table.records[i].view(now) for i in ids],
        }

    def upload(
        self,
        now: float,
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
        """``POST /v1/libraries/{id}/documents``: ``(Document, created)``.

        A file with the same content as a document already in the library is not added:
        that document is answered (``created`` false, the API's 200).
        """
        _check(outcome, OUTCOMES, "document outcome")
        digest = hashlib.sha256(content).hexdigest()
        lib = self._library(library_id)
        existing = lib.by_hash.get(digest)
        if existing is not None and existing in lib.documents.records:
            return lib.documents.records[existing].view(now), False
        doc = self._add(
            lib,
            filename,
            len(content),
            digest,
            mime_type,
            outcome,
            queued_for,
            processing_for,
            created_at,
            now,
        )
        return doc.view(now), True

    def _add(
        self,
        lib: Library,
        name: str,
        size: int,
        digest: str,
        mime_type: str | None,
        outcome: str,
        queued_for: float | None,
        processing_for: float | None,
        created_at: float | None,
        now: float,
    ) -> Document:
        queued = QUEUED_FOR if queued_for is None else float(queued_for)
        working = PROCESSING_FOR if processing_for is None else float(processing_for)
        if queued < 0 or working < 0:
            raise InvalidRequest("queued_for and processing_for must be zero or more seconds")
        at = now if created_at is None else float(created_at)
        extension = name.rpartition(".")[2].lower() if "." in name else None
        doc = Document(
            id=self._new_id(),
            seq=self._next_seq(),
            library_id=lib.id,
            created_at=at,
            name=name,
            mime_type=mime_type or mimetypes.guess_type(name)[0],
            extension=extension,
            size=size,
            hash=digest,
            uploaded_by=self._user,
            timeline=plan_pass(at, queued, working, outcome),
            pages=self.rng.randint(1, 40) if extension == "pdf" else None,
        )
        lib.documents.add(doc)
        lib.by_hash[digest] = doc.id
        lib.size += size
        lib.updated_at = max(lib.updated_at, now)
        return doc

    def add_document(
        self,
        now: float,
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
        name = name or f"notes_{self.rng.getrandbits(32):08x}.pdf"
        content = self.rng.randbytes(size if size is not None else self.rng.randint(2000, 90000))
        return self.upload(
            now,
            library_id,
            name,
            content,
            mime_type=mime_type,
            outcome=outcome,
            queued_for=queued_for,
            processing_for=processing_for,
            created_at=created_at,
        )[0]

    def get_document(self, now: float, library_id: str, id: str) -> Json:
        """``GET /v1/libraries/{id}/documents/{document_id}``: a ``Document``."""
        return self._document(library_id, id)[1].view(now)

    def status(self, now: float, library_id: str, id: str) -> Json:
        """``GET …/documents/{document_id}/status``: a ``ProcessingStatus``."""
        status = self._document(library_id, id)[1].status(now)
        return {"document_id": id, "process_status": status, "processing_status": status}

    def delete_document(self, now: float, library_id: str, id: str) -> None:
        """``DELETE …/documents/{document_id}``."""
        lib, doc = self._document(library_id, id)
        self._drop(lib, doc, now)

    def _drop(self, lib: Library, doc: Document, now: float) -> None:
        lib.documents.remove(doc.id)
        lib.by_hash.pop(doc.hash, None)
        lib.size -= doc.size
        lib.updated_at = max(lib.updated_at, now)

    def reprocess(
        self,
        now: float,
        library_id: str,
        id: str,
        *,
        outcome: str = "done",
        queued_for: float | None = None,
        processing_for: float | None = None,
    ) -> None:
        """``POST …/documents/{document_id}/reprocess``: a new pass from now."""
        _check(outcome, OUTCOMES, "document outcome")
        doc = self._document(library_id, id)[1]
        doc.processed_before = doc.last_processed_at(now)
        doc.tokens_before = doc.tokens(now)
        queued = QUEUED_FOR if queued_for is None else queued_for
        working = PROCESSING_FOR if processing_for is None else processing_for
        doc.timeline = plan_pass(now, queued, working, outcome)

    def advance(self, now: float, library_id: str, id: str, status: str | None = None) -> Json:
        """End a document's current phase now: on to its next status, or to ``status``.

        ``status`` is ``in_progress`` or an outcome (``error``, ``missing_content`` make
        the pass fail); a settled document cannot advance.
        """
        if status is not None:
            _check(status, ("in_progress", *OUTCOMES), "document status")
        doc = self._document(library_id, id)[1]
        current = doc.status(now)
        if current in OUTCOMES:
            raise InvalidRequest(f"Document {id} is {current}; reprocess it to move it again")
        past = [(s, at) for s, at in doc.timeline if at <= now]
        if status is None:
            status = "in_progress" if current == "todo" else doc.timeline[-1][0]
        if status == "in_progress":
            if current == "in_progress":
                raise InvalidRequest(f"Document {id} is in_progress already")
            working = doc.timeline[-1][1] - doc.timeline[1][1]
            doc.timeline = [*past, ("in_progress", now), (doc.timeline[-1][0], now + working)]
        else:
            doc.timeline = [*past, (status, now)]
        return doc.view(now)

    # ---------------------------------------------------------------- bulk

    def bulk(
        self, now: float, *, libraries: int, documents: int, span: float = 30 * 86400.0
    ) -> Json:
        """Add ``libraries`` libraries of ``documents`` processed documents each, made over
        the past ``span`` seconds."""
        if libraries < 0 or documents < 0:
            raise InvalidRequest("bulk counts must be zero or more")
        if span <= 0:
            raise InvalidRequest("bulk span must be more than 0 seconds")
        latest = now - 60.0
        for n in range(libraries):
            made = sorted(latest - span * self.rng.random() for _ in range(documents + 1))
            lib = self._create(f"Library {n + 1}", None, "Workspace", made[0], now)
            docs = []
            for at in made[1:]:
                size = self.rng.randint(2000, 90000)
                doc = Document(
                    id=self._new_id(),
                    seq=self._next_seq(),
                    library_id=lib.id,
                    created_at=at,
                    name=f"doc_{self.rng.getrandbits(32):08x}.pdf",
                    mime_type="application/pdf",
                    extension="pdf",
                    size=size,
                    hash=f"{self.rng.getrandbits(256):064x}",
                    uploaded_by=self._user,
                    timeline=plan_pass(at, 1.0, 5.0, "done"),
                    pages=self.rng.randint(1, 40),
                )
                docs.append(doc)
                lib.by_hash[doc.hash] = doc.id
                lib.size += size
            lib.documents.load(docs)
            lib.updated_at = made[-1]
        return {"libraries": libraries, "documents": documents}

    def demo(self, now: float) -> None:
        """Libraries with some history, their documents processed hours ago (the demo's)."""
        hour = 3600.0
        seeded = {
            ("Product manuals", now - 5 * hour): (
                ("installation_guide.pdf", "done"),
                ("warranty_terms.pdf", "done"),
                ("scanned_receipt.png", "missing_content"),
                ("release_notes.md", "done"),
            ),
            ("Support answers", now - 2 * hour): (
                ("refund_policy.docx", "done"),
                ("shipping_times.md", "done"),
            ),
        }
        for (name, created), documents in seeded.items():
            lib = self._create(name, None, "Workspace", created, created)
            for n, (filename, outcome) in enumerate(documents):
                at = created + 600.0 * (n + 1)
                digest = f"{self.rng.getrandbits(256):064x}"
                size = self.rng.randint(2000, 90000)
                self._add(lib, filename, size, digest, None, outcome, 20.0, 90.0, at, at)

    def counts(self) -> Json:
        """How many libraries and documents there are."""
        docs = sum(len(lib.documents) for lib in self.table.records.values())
        return {"libraries": len(self.table), "documents": docs}

    def clear(self) -> None:
        """Forget every library."""
        self.table.clear()
        self._played = (0.0, 0)

    # ------------------------------------------------------------- activity

    def settle(self, now: float) -> None:
        """Play the activity ticks due by ``now``, each once."""
        activity = self.activity
        if self._played[0] != activity.anchor:
            self._played = (activity.anchor, 0)
        if not activity.enabled or not self.available or now < activity.anchor:
            return
        due = int((now - activity.anchor) // activity.every) + 1
        done = max(self._played[1], due - MAX_CATCH_UP_TICKS)
        for n in range(done, due):
            self._tick(n, activity.anchor + n * activity.every)
        self._played = (activity.anchor, max(done, due))

    def _tick(self, n: int, at: float) -> None:
        """One activity tick: every kind of change once per cycle of seven."""
        step = n % CYCLE
        rng = self.rng
        shelf = self._newest(lambda lib: lib.activity)
        if shelf is None or step == 5:
            shelf = self._create("Field reports", None, "Workspace", at, at, activity=True)
        if step in (0, 1, 3):
            outcome = {0: "done", 1: "error", 3: "missing_content"}[step]
            name = f"report_{rng.getrandbits(24):06x}.{rng.choice(('pdf', 'docx', 'md'))}"
            self._add(
                shelf,
                name,
                rng.randint(2000, 90000),
                f"{rng.getrandbits(256):064x}",
                None,
                outcome,
                rng.uniform(0.5, 1.5),
                rng.uniform(2.0, 4.0),
                at,
                at,
            )
        elif step == 2:
            doc = self._oldest_document(lambda d: d.status(at) == "done", before=at)
            if doc is not None:
                doc.processed_before = doc.last_processed_at(at)
                doc.tokens_before = doc.tokens(at)
                doc.timeline = plan_pass(at, 0.5, rng.uniform(2.0, 4.0), "done")
        elif step == 4:
            doc = self._oldest_document(
                lambda d: d.status(at) in OUTCOMES, before=at - MIN_AGE_TO_DELETE
            )
            if doc is not None:
                self._drop(self.table.records[doc.library_id], doc, at)
        elif step == 6:
            old = [
                lib
                for lib in self.table.records.values()
                if lib.activity and lib.created_at <= at - MIN_AGE_TO_DELETE and lib is not shelf
            ]
            if old:
                self.table.remove(min(old, key=lambda lib: lib.key).id)

    def _newest(self, keep: Callable[[Library], bool]) -> Library | None:
        for key in reversed(self.table.order.keys):
            if keep(self.table.records[key[2]]):
                return self.table.records[key[2]]
        return None

    def _oldest_document(
        self, keep: Callable[[Document], bool], *, before: float
    ) -> Document | None:
        for lib in self.table.records.values():
            if not lib.activity:
                continue
            for key in lib.documents.order.keys:
                doc = lib.documents.records[key[2]]
                if doc.created_at <= before and keep(doc):
                    return doc
        return None
