"""One poll of one source: list, confirm, diff, commit — the I/O around the pure diff.

Two ways to look:

- **full** (files and models always; jobs at their first poll and at every reconcile): the
  complete listing, compared with the whole snapshot. Only a full, complete listing can
  reveal a deletion, and a deletion is announced only when a direct GET answers 404.
- **incremental** (jobs between reconciles): the newest-first head since the cursor (new
  jobs), the active set (outcomes), and a direct GET for each tracked job that left the
  active set. Its cost follows the number of moving jobs, never the history.

Either way every write of the poll goes through ``Store.commit_poll``'s one transaction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import structlog

from poller import utils
from poller.diff import DiffResult, diff
from poller.exceptions import ApiError
from poller.mistral.client import MistralClient
from poller.model import Event, Resource, SourceState
from poller.sources import BATCH_JOBS, SourceSpec
from poller.store.sql import PollCommit, Store

log = structlog.get_logger("poller.polling")

HEAD_OVERLAP = 60
"""Seconds the incremental head looks back before the cursor (clock granularity, skew)."""
CONFIRM_CONCURRENCY = 4


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """What a source poller needs from the configuration of its workspace."""

    workspace: str = "default"
    emit_existing: bool = False
    reconcile_interval: float = 600.0
    mass_delete_threshold: float = 0.5
    incremental: bool = True


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
    ) -> None:
        self.spec = spec
        self.client = client
        self.store = store
        self.settings = settings
        self.clock = clock
        self.log = log.bind(workspace=settings.workspace, source=spec.name)

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
        else:
            report = await self._full(state, now)
        return dataclasses.replace(report, requests=self.client.requests - before_requests)

    def _incremental_due(self, state: SourceState, now: dt.datetime) -> bool:
        if not (self.settings.incremental and self.spec.has_lifecycle and state.baselined):
            return False
        if state.last_reconcile_at is None:
            return False
        since = (now - state.last_reconcile_at).total_seconds()
        return since < self.settings.reconcile_interval

    # -- full listing ------------------------------------------------------------------

    async def _full(self, state: SourceState, now: dt.datetime) -> PollReport:
        listing = await self.client.list_all(self.spec.list_path, paged=self.spec.paged)
        seen = self._resources(listing.items)
        before = await asyncio.to_thread(
            self.store.load_resources, self.workspace, self.spec.name, None
        )
        baseline = not state.baselined
        gone: list[str] = []
        held_since, held = state.held_since, state.held_count
        if not baseline:
            if not listing.complete:
                self.log.warning(
                    "listing_incomplete",
                    total=listing.total,
                    got=len(listing.items),
                    consequence="no deletions this time",
                )
            else:
                gone, found, held_since, held = await self._deletions(before, seen, state, now)
                seen.extend(found)
        result = diff(
            self.spec,
            before,
            seen,
            gone=gone,
            announce=self.settings.emit_existing or not baseline,
            workspace=self.workspace,
            now=now,
        )
        events = await self._commit(
            result, now, seen, reconciled=True, held_since=held_since, held=held, state=state
        )
        if baseline:
            self.log.info("baseline_recorded", items=len(seen), announced=len(events))
        return PollReport(
            source=self.spec.name,
            mode="baseline" if baseline else "full",
            events=tuple(events),
            active=await self._active_count(),
            requests=0,
            complete=listing.complete,
            held=held,
        )

    async def _deletions(
        self,
        before: dict[str, Resource],
        seen: list[Resource],
        state: SourceState,
        now: dt.datetime,
    ) -> tuple[list[str], list[Resource], dt.datetime | None, int]:
        """Which remembered items are really gone: (gone, found after all, held_since, held).

        An item absent from a complete listing is gone only when a direct GET answers 404.
        When the listing would delete too much (it is empty, or over the threshold), the
        deletions are held until a second listing a reconcile interval later agrees.
        """
        listed = {r.id for r in seen}
        missing = sorted(set(before) - listed)
        if not missing:
            if state.held_since is not None:
                self.log.info("deletions_released", reason="the listing is whole again")
            return [], [], None, 0
        too_many = not seen or len(missing) > self.settings.mass_delete_threshold * len(before)
        if too_many:
            held_since = state.held_since or now
            waited = (now - held_since).total_seconds()
            if waited < self.settings.reconcile_interval:
                if state.held_since is None:
                    self.log.warning(
                        "deletions_held",
                        missing=len(missing),
                        tracked=len(before),
                        reason="empty listing" if not seen else "mass deletion",
                        confirm_after_s=self.settings.reconcile_interval,
                    )
                return [], [], held_since, len(missing)
            self.log.warning("deletions_confirming", missing=len(missing), held_for_s=round(waited))
        gone, found = await self.confirm(missing)
        return gone, found, None, 0

    async def confirm(self, ids: Sequence[str]) -> tuple[list[str], list[Resource]]:
        """Direct GETs: (ids answered 404, items that exist after all). Errors decide nothing."""
        semaphore = asyncio.Semaphore(CONFIRM_CONCURRENCY)
        gone: list[str] = []
        found: list[Resource] = []

        async def one(rid: str) -> None:
            async with semaphore:
                try:
                    item = await self.client.get_item(self.spec.item_path.format(id=rid))
                except ApiError as exc:
                    self.log.warning("confirm_failed", resource_id=rid, error=str(exc))
                    return
            if item is None:
                gone.append(rid)
            elif self.spec.tracks(item):
                found.append(self.spec.to_resource(item))

        await asyncio.gather(*(one(rid) for rid in ids))
        return sorted(gone), found

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
        result = diff(
            self.spec, before, seen.values(), gone=gone, workspace=self.workspace, now=now
        )
        events = await self._commit(
            result,
            now,
            seen.values(),
            reconciled=False,
            state=state,
            held_since=state.held_since,
            held=state.held_count,
        )
        return PollReport(
            source=self.spec.name,
            mode="incremental",
            events=tuple(events),
            active=await self._active_count(),
            requests=0,
        )

    # -- shared ------------------------------------------------------------------------

    def _resources(self, items: Iterable[dict[str, Any]]) -> list[Resource]:
        return [self.spec.to_resource(item) for item in items if self.spec.tracks(item)]

    async def _commit(
        self,
        result: DiffResult,
        now: dt.datetime,
        seen: Iterable[Resource],
        *,
        reconciled: bool,
        state: SourceState,
        held_since: dt.datetime | None = None,
        held: int = 0,
    ) -> list[Event]:
        created = [r.created for r in seen if r.created is not None]
        cursor = max(
            [*created, *([state.cursor] if state.cursor is not None else [])], default=None
        )
        commit = PollCommit(
            workspace=self.workspace,
            source=self.spec.name,
            result=result,
            now=now,
            cursor=cursor,
            reconciled=reconciled,
            held_since=held_since,
            held_count=held,
        )
        return await asyncio.to_thread(
            self.store.commit_poll, commit, active=lambda r: self.spec.is_active(r.status)
        )

    async def _active_count(self) -> int:
        if not self.spec.has_lifecycle:
            return 0
        return len(await asyncio.to_thread(self.store.active_ids, self.workspace, self.spec.name))
