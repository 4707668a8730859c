"""One poll of one source: list, confirm, diff, commit — the I/O around the pure diff.

Two ways to look:

- **full** (files and models always; jobs at their first poll and at every reconcile): the
  complete listing, compared with the whole snapshot. Only a full, complete listing can
  reveal a deletion, and a deletion is announced only when a direct GET answers 404.
- **incremental** (jobs between reconciles): the newest-first head since the cursor (new
  jobs), the active set (outcomes), and a direct GET for each tracked job that left the
  active set. Its cost follows the number of moving jobs, never the history.
- **tail** (files between reconciles, once a full listing showed their order): only the
  end of the listing where new items appear, and the answered total to tell whether
  anything else changed; when it did, a full listing (``poller.listorder``).

Either way every write of the poll goes through ``Store.commit_poll``'s one transaction,
begun once everything was fetched: no request to the API happens while it is open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import structlog

from poller import listorder, staging, utils
from poller.diff import DiffResult, diff
from poller.exceptions import ApiError, GarbledError
from poller.mistral.client import MistralClient, Pages
from poller.mistral.paging import CursorPages
from poller.model import Event, Resource, SourceState
from poller.sources import BATCH_JOBS, SourceSpec
from poller.store.sql import Fence, PollCommit, Store

log = structlog.get_logger("poller.polling")

T = TypeVar("T")

HEAD_OVERLAP = 60
"""Seconds the incremental head and the files tail look back before the cursor: clock
granularity, skew, and a slow upload listed after newer files."""
CONFIRM_CONCURRENCY = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What a source poller needs from the configuration of its workspace."""

    workspace: str = "default"
    emit_existing: bool = False
    reconcile_interval: float = 600.0
    mass_delete_threshold: float = 0.5
    mass_delete_min: int = 10
    incremental: bool = True
    opt_in: frozenset[str] = frozenset()
    """Opt-in event types this source announces (``batch_job.started``)."""
    include_internal: bool = False
    """Workflow runs: also track the runs of internal workflows (parallel execution...)."""


@dataclasses.dataclass(frozen=True, slots=True)
class PollReport:
    """What one poll found and did."""

    source: str
    mode: str
    """``baseline``, ``full`` or ``incremental``."""
    events: tuple[Event, ...]
    active: int
    """Jobs of the source still moving after this poll."""
    requests: int
    complete: bool = True
    held: int = 0
    """Deletions held back by the mass-deletion guard."""


class Polling(Protocol):
    """What the runner schedules: one source of one workspace, polled one poll at a time.

    ``SourcePoller`` serves the paged lists; a source whose API pages or nests otherwise
    brings a class of its own, chosen by the composition root (``app.STRATEGIES``).
    """

    spec: SourceSpec
    settings: Settings
    """Replaced whole at a reload."""
    fence: Fence | None
    """First call of each poll's write transaction (a replica's lease check), if any."""

    @property
    def workspace(self) -> str: ...

    async def poll(self) -> PollReport:
        """One poll; raises ``ApiError`` when the API gave nothing usable (nothing is written)."""
        ...


PollerFactory = Callable[..., Polling]
"""Builds a source's poller: ``(spec, *, client, store, settings, clock)``."""


async def settled(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn`` in a worker thread, waited for to the end even if the poll is cancelled.

    The poll's open transaction lives on one connection: when a poll is cut short (its
    timeout, shutdown), the rollback must not start while a thread still writes on it.
    """
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


def newest(cursor: int | None, resources: Iterable[Resource]) -> int | None:
    """The cursor moved up to the newest creation time among ``resources``."""
    times = [r.created for r in resources if r.created is not None]
    if cursor is not None:
        times.append(cursor)
    return max(times, default=None)


def reconciled(settings: Settings, state: SourceState, now: dt.datetime) -> bool:
    """Whether the source was read in full less than a reconcile interval ago: it may read less."""
    if not (settings.incremental and state.baselined) or state.last_reconcile_at is None:
        return False
    return (now - state.last_reconcile_at).total_seconds() < settings.reconcile_interval


def guard(
    missing: int,
    tracked: int,
    *,
    listed: bool,
    state: SourceState,
    now: dt.datetime,
    settings: Settings,
    log: structlog.typing.FilteringBoundLogger,
) -> tuple[bool, dt.datetime | None, int]:
    """Whether ``missing`` items a complete listing no longer shows go on to their direct
    GETs now: ``(confirm, held_since, held)``.

    When the listing would delete too much (at least ``mass_delete_min`` of the
    ``tracked`` items and more than the threshold's share), the deletions are held until
    a second listing a reconcile interval later agrees. ``listed``: the listing showed
    anything at all.
    """
    if not missing:
        if state.held_since is not None:
            log.info("deletions_released", reason="the listing is whole again")
        return False, None, 0
    too_many = (
        missing >= settings.mass_delete_min and missing > settings.mass_delete_threshold * tracked
    )
    if too_many:
        held_since = state.held_since or now
        waited = (now - held_since).total_seconds()
        if waited < settings.reconcile_interval:
            if state.held_since is None:
                log.warning(
                    "deletions_held",
                    missing=missing,
                    tracked=tracked,
                    reason="empty listing" if not listed else "mass deletion",
                    confirm_after_s=settings.reconcile_interval,
                )
            return False, held_since, missing
        log.warning("deletions_confirming", missing=missing, held_for_s=round(waited))
    return True, None, 0


async def confirm(
    client: MistralClient,
    paths: Mapping[str, str],
    log: structlog.typing.FilteringBoundLogger,
    *,
    get: Callable[[str], Awaitable[dict[str, Any] | None]] | None = None,
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """GETs of ``paths`` by key with ``get`` (default ``client.get_item``): (keys answered 404,
    answers of the items that exist after all). An error decides nothing: its key is in neither."""
    read = get or client.get_item
    semaphore = asyncio.Semaphore(CONFIRM_CONCURRENCY)
    gone: list[str] = []
    found: dict[str, dict[str, Any]] = {}

    async def one(key: str, path: str) -> None:
        async with semaphore:
            try:
                item = await read(path)
            except ApiError as exc:
                log.warning("confirm_failed", resource_id=key, error=str(exc))
                return
        if item is None:
            gone.append(key)
        else:
            found[key] = item

    await asyncio.gather(*(one(key, path) for key, path in paths.items()))
    return sorted(gone), found


@dataclasses.dataclass(eq=False)
class _TailRead:
    """The pages a tail read took, each item once, and the snapshot rows of those known."""

    pages: dict[int, list[Resource]] = dataclasses.field(default_factory=dict)
    ids: set[str] = dataclasses.field(default_factory=set)
    before: dict[str, Resource] = dataclasses.field(default_factory=dict)
    watch: listorder.OrderWatch | None = dataclasses.field(default_factory=listorder.OrderWatch)
    """The creation times read so far, in the listing's order (``None``: to be fed again)."""

    def add(self, page: int, resources: Iterable[Resource]) -> list[Resource]:
        """Take page ``page``; the items not read on another page already."""
        fresh = [r for r in resources if r.id not in self.ids]
        self.ids.update(r.id for r in fresh)
        if self.watch is not None and (not self.pages or page > max(self.pages)):
            self.watch.feed(r.created for r in fresh)
        else:  # a page before those read: the order is checked again from the start
            self.watch = None
        self.pages[page] = fresh
        return fresh

    def listed(self, until: str | None = None) -> list[Resource]:
        """The items read, in the listing's order, up to (not with) item ``until``."""
        items = [r for page in sorted(self.pages) for r in self.pages[page]]
        ids = [r.id for r in items]
        return items[: ids.index(until)] if until is not None else items

    def keeps(self, order: listorder.Order) -> bool:
        """Whether the items read, in the listing's order, keep ``order``."""
        if self.watch is None:
            self.watch = listorder.OrderWatch()
            self.watch.feed(r.created for r in self.listed())
        return self.watch.keeps(order)


class SourcePoller:
    """Polls one source of one workspace."""

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
        self.order: listorder.Order | None = None
        """The order the last full listing showed (tail sources), until a page breaks it."""
        self.page_size = client.page_size

    @property
    def workspace(self) -> str:
        return self.settings.workspace

    async def poll(self) -> PollReport:
        """One poll; raises ``ApiError`` when the API gave nothing usable (nothing is written)."""
        now = self.clock()
        state = await asyncio.to_thread(self.store.source_state, self.workspace, self.spec.name)
        before_requests = self.client.requests
        if self._incremental_due(state, now):
            report = await self._incremental(state, now)
        elif self._tail_due(state, now):
            report = await self._tail(state, now)
        else:
            report = await self._full(state, now)
        return dataclasses.replace(report, requests=self.client.requests - before_requests)

    def _reconciled(self, state: SourceState, now: dt.datetime) -> bool:
        return reconciled(self.settings, state, now)

    def _incremental_due(self, state: SourceState, now: dt.datetime) -> bool:
        return self.spec.has_lifecycle and self._reconciled(state, now)

    def _tail_due(self, state: SourceState, now: dt.datetime) -> bool:
        return self.spec.tail and self.order is not None and self._reconciled(state, now)

    # -- full listing ------------------------------------------------------------------

    async def _full(self, state: SourceState, now: dt.datetime) -> PollReport:
        """Stream the whole listing page by page against the snapshot; write it all at once.

        Memory stays flat whatever the history: a page, the ids of the listing and of the
        snapshot, and what changed (staged in ``Staging``) — never the whole listing or the
        whole snapshot at once. The store's write transaction is held only to apply it.
        """
        baseline = not state.baselined
        announce = self.settings.emit_existing or not baseline
        stored = await asyncio.to_thread(self.store.ids, self.workspace, self.spec.name)
        pager = self.listing()
        listed: set[str] = set()
        ordered: list[tuple[int, int, Event]] = []
        cursor = state.cursor
        watch = listorder.OrderWatch()
        self.order = None
        with staging.Staging() as staged:
            async for page in pager:
                seen = self._resources(page)
                watch.feed(r.created for r in seen)
                listed.update(r.id for r in seen)
                known = [r.id for r in seen if r.id in stored]
                before = (
                    await asyncio.to_thread(
                        self.store.load_resources, self.workspace, self.spec.name, known
                    )
                    if known
                    else {}
                )
                result = self.diff(before, seen, now, announce=announce)
                created = {r.id: r.created or 0 for r in result.upserts}
                ordered.extend(
                    (created.get(e.resource_id, 0), len(ordered), e) for e in result.events
                )
                staged.add(result.upserts)
                cursor = self.advance(cursor, seen)
            if baseline and not pager.complete:
                # a baseline must see everything, or what it missed would be announced as
                # new later; nothing is written, and the next poll takes it again
                raise GarbledError(
                    f"the first listing came back incomplete ({len(pager.seen)} of "
                    f"{pager.total} items); the baseline is taken again at the next poll",
                    method="GET",
                    path=self.spec.list_path,
                )
            events = [e for _, _, e in sorted(ordered, key=lambda x: (x[0], x[1]))]
            change = DiffResult()
            held_since, held = state.held_since, state.held_count
            if not baseline and not pager.complete:
                self.log.warning(
                    "listing_incomplete",
                    total=pager.total,
                    got=len(pager.seen),
                    consequence="no deletions this time",
                )
            elif not baseline:
                gone, found, held_since, held = await self._deletions(stored, listed, state, now)
                if gone or found:
                    before = await asyncio.to_thread(
                        self.store.load_resources,
                        self.workspace,
                        self.spec.name,
                        [*gone, *(r.id for r in found)],
                    )
                    change = self.diff(before, found, now, gone=gone)
            commit = PollCommit(
                workspace=self.workspace,
                source=self.spec.name,
                result=dataclasses.replace(change, events=(*events, *change.events)),
                now=now,
                cursor=cursor,
                reconciled=True,
                held_since=held_since,
                held_count=held,
            )
            recorded = await settled(
                self.store.commit_poll,
                commit,
                active=self._active,
                staged=staged.chunks(),
                fence=self.fence,
            )
        if self.spec.tail and pager.complete:
            self.order, self.page_size = watch.order(), pager.size
        if baseline:
            self.log.info("baseline_recorded", items=len(listed), announced=len(recorded))
        return PollReport(
            source=self.spec.name,
            mode="baseline" if baseline else "full",
            events=tuple(recorded),
            active=await self._active_count(),
            requests=0,
            complete=pager.complete,
            held=held,
        )

    def _active(self, resource: Resource) -> bool:
        return self.spec.is_active(resource.status)

    async def _deletions(
        self,
        stored: set[str],
        listed: set[str],
        state: SourceState,
        now: dt.datetime,
    ) -> tuple[list[str], list[Resource], dt.datetime | None, int]:
        """Which remembered items are really gone: (gone, found after all, held_since, held).

        An item absent from a complete listing is gone only when a direct GET answers 404.
        When the listing would delete too much (at least ``mass_delete_min`` items and more
        than the threshold's share), the deletions are held until a second listing a
        reconcile interval later agrees.
        """
        missing = sorted(stored - listed)
        go, held_since, held = guard(
            len(missing),
            len(stored),
            listed=bool(listed),
            state=state,
            now=now,
            settings=self.settings,
            log=self.log,
        )
        if not go:
            return [], [], held_since, held
        gone, found = await self.confirm(missing)
        return gone, found, None, 0

    async def confirm(self, ids: Sequence[str]) -> tuple[list[str], list[Resource]]:
        """Direct GETs: (ids answered 404, items that exist after all). Errors decide nothing."""
        paths = {rid: self.spec.item_url(rid) for rid in ids}
        gone, bodies = await confirm(self.client, paths, self.log, get=self.fetch)
        return gone, [self.spec.to_resource(b) for b in bodies.values() if self.spec.tracks(b)]

    # -- incremental -------------------------------------------------------------------

    async def _incremental(self, state: SourceState, now: dt.datetime) -> PollReport:
        seen: dict[str, Resource] = {}
        head_params: dict[str, Any] = {}
        if self.spec is BATCH_JOBS:
            head_params["order_by"] = "-created"
        if state.cursor is not None:
            after = utils.from_unix(max(0, state.cursor - HEAD_OVERLAP))
            head_params["created_after"] = after.strftime("%Y-%m-%dT%H:%M:%SZ")
        head = await self.client.list_all(self.spec.list_path, params=head_params)
        for r in self._resources(head.items):
            seen[r.id] = r
        active = await asyncio.to_thread(self.store.active_ids, self.workspace, self.spec.name)
        unresolved = [rid for rid in active if rid not in seen]
        if unresolved and self.spec is BATCH_JOBS:
            moving = await self.client.list_all(
                self.spec.list_path, params={"status": sorted(self.spec.active_statuses)}
            )
            for r in self._resources(moving.items):
                seen[r.id] = r
            unresolved = [rid for rid in unresolved if rid not in seen]
        gone: list[str] = []
        if unresolved:
            gone, found = await self.confirm(unresolved)
            for r in found:
                seen[r.id] = r
        before = await asyncio.to_thread(
            self.store.load_resources, self.workspace, self.spec.name, [*seen, *gone]
        )
        result = self.diff(before, seen.values(), now, gone=gone)
        return await self._commit(result, now, seen.values(), state)

    # -- tail --------------------------------------------------------------------------

    async def _tail(self, state: SourceState, now: dt.datetime) -> PollReport:
        """Read the end of the listing where new items appear; list in full if more changed.

        The end reaches back ``HEAD_OVERLAP`` seconds before the cursor: a slow upload is
        listed after newer files, with the creation time its upload began with.
        """
        assert self.order is not None
        order, size = self.order, self.page_size
        tracked, _ = await asyncio.to_thread(self.store.counts, self.workspace, self.spec.name)
        expected = tracked - state.held_count
        since = None if state.cursor is None else state.cursor - HEAD_OVERLAP
        first = listorder.first_page(order, expected, size)
        read = _TailRead()
        total: int | None = None
        stop: str | None = None  # the known item older than the window a newest-first read met
        page = first
        while True:
            listing = await self.client.list_page(self.spec.list_path, page=page, page_size=size)
            total = listing.total if total is None else total
            fresh = read.add(page, self._resources(listing.items))
            if total is None or not read.keeps(order):
                break
            read.before.update(await self._known(fresh))
            known = read.before
            reached = (
                r for r in fresh if listorder.reached_known(order, r.id in known, r.created, since)
            )
            stop = next((r.id for r in reached), None)
            if stop is not None or listorder.last_page(page, len(listing.items), size, total):
                break
            page += 1
        if order == "oldest" and total is not None and read.keeps(order):
            await self._window_before(read, first, since)
        seen = read.listed(until=stop)
        new = sum(r.id not in read.before for r in seen)
        if not read.keeps(order) or not listorder.balanced(total, expected, new):
            self.log.info(
                "listing_changed",
                order=order if read.keeps(order) else "broken",
                expected=expected,
                new=new,
                total=total,
                consequence="full listing",
            )
            self.order = None
            return await self._full(state, now)
        result = self.diff(read.before, seen, now)
        return await self._commit(result, now, seen, state)

    async def _window_before(self, read: _TailRead, first: int, since: int | None) -> None:
        """Oldest first: read back from page ``first`` until a page starts before the window.

        A late upload sorts before newer files, so it may sit a page or more before the one
        holding the last item poller expects.
        """
        opening = read.pages[first]
        edge = opening[0].created if opening else None
        page = first - 1
        while page >= 0 and not listorder.before_window(edge, since):
            listing = await self.client.list_page(
                self.spec.list_path, page=page, page_size=self.page_size
            )
            items = self._resources(listing.items)
            edge = items[0].created if items else None
            read.before.update(await self._known(read.add(page, items)))
            page -= 1

    async def _known(self, resources: Sequence[Resource]) -> dict[str, Resource]:
        """The snapshot rows of those of ``resources`` the store knows."""
        ids = [r.id for r in resources]
        return await asyncio.to_thread(
            self.store.load_resources, self.workspace, self.spec.name, ids
        )

    # -- shared ------------------------------------------------------------------------

    def diff(
        self,
        before: Mapping[str, Resource],
        seen: Iterable[Resource],
        now: dt.datetime,
        **options: Any,
    ) -> DiffResult:
        """``diff.diff`` for this source: its spec, workspace and the events it opted in to."""
        return diff(
            self.spec,
            before,
            seen,
            workspace=self.workspace,
            now=now,
            milestones=self.settings.opt_in,
            **options,
        )

    def listing(self) -> Pages | CursorPages:
        """The pages of the source's complete listing (a full poll reads them all)."""
        return self.client.pages(self.spec.list_path, paged=self.spec.paged)

    async def fetch(self, path: str) -> dict[str, Any] | None:
        """One item by its path, or ``None`` when the API answers 404 (it is gone)."""
        return await self.client.get_item(path)

    def advance(self, cursor: int | None, seen: Iterable[Resource]) -> int | None:
        """The source's cursor once ``seen`` was read (the newest creation time)."""
        return newest(cursor, seen)

    def _resources(self, items: Iterable[dict[str, Any]]) -> list[Resource]:
        return [self.spec.to_resource(item) for item in items if self.spec.tracks(item)]

    async def _commit(
        self, result: DiffResult, now: dt.datetime, seen: Iterable[Resource], state: SourceState
    ) -> PollReport:
        """Commit an incremental poll (no deletions, held ones kept as they are)."""
        commit = PollCommit(
            workspace=self.workspace,
            source=self.spec.name,
            result=result,
            now=now,
            cursor=self.advance(state.cursor, seen),
            held_since=state.held_since,
            held_count=state.held_count,
        )
        events = await settled(
            self.store.commit_poll, commit, active=self._active, fence=self.fence
        )
        return PollReport(
            source=self.spec.name,
            mode="incremental",
            events=tuple(events),
            active=await self._active_count(),
            requests=0,
            held=state.held_count,
        )

    async def _active_count(self) -> int:
        if not self.spec.has_lifecycle:
            return 0
        return len(await asyncio.to_thread(self.store.active_ids, self.workspace, self.spec.name))
