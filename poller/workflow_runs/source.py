"""Polling workflow runs (``GET /v1/workflows/runs``): cursor pages and time windows.

The runs list pages by token (``next_page_token``), answers no total and filters by time
(``start_time_after``, ``end_time_after``, inclusive). So, between reconciles, a poll reads
two windows since its cursor — the runs that started and the runs that ended — and a
quiet workspace costs two requests whatever its history; an outcome comes from the
ended window, never from one GET per running run.

The cursor is the newest ``start_time`` or ``end_time`` seen, in the API's own clock, so
the poller's clock never enters a filter. The windows open ``OVERLAP`` seconds before it
(the filters' one-second granularity, runs that become visible a little late, skew
between the API's servers); what the overlap reads again is already in the snapshot, and
the diff announces nothing twice. The first poll and every reconcile list everything, as
for other sources (``SourcePoller._full``): a run absent from that complete listing
leaves the snapshot silently once its GET answers (``WorkflowRunPoller.confirm``).

A poll cut off between two pages writes nothing: the next one reads the same windows
again from the same cursor, so nothing is lost and no transition gets a second id.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from poller import polling, sources, utils
from poller.exceptions import GarbledError
from poller.mistral.client import MistralClient
from poller.mistral.paging import CursorPages
from poller.model import Resource, SourceState
from poller.polling import PollReport, Settings, SourcePoller
from poller.sources import RunSpec, SourceSpec
from poller.store.sql import Fence, Store

OVERLAP = 60
"""Seconds the windows open before the cursor."""
PAGE_SIZE = 1000
"""Runs asked for per page: the API's maximum (a run is small: the list leaves its result out)."""


def stamp(seconds: int) -> str:
    """A time filter's value: RFC 3339 in UTC, to the second."""
    return utils.from_unix(seconds).strftime("%Y-%m-%dT%H:%M:%SZ")


def windows(cursor: int | None) -> list[dict[str, str]]:
    """The filters of an incremental poll: runs started, and runs ended, since the cursor."""
    if cursor is None:  # no run seen yet: the listing holds only what is new
        return [{}]
    after = stamp(max(0, cursor - OVERLAP))
    return [{"start_time_after": after}, {"end_time_after": after}]


def newest(cursor: int | None, runs: Iterable[Resource]) -> int | None:
    """The cursor once ``runs`` were read: the newest start or end time, never moving back."""
    times = [cursor] if cursor is not None else []
    for run in runs:
        ended = sources.unix_seconds(run.data.get("end_time"))
        times += [t for t in (run.created, ended) if t is not None]
    return max(times, default=None)


class WorkflowRunPoller(SourcePoller):
    """Polls the workflow runs of one workspace (``app.STRATEGIES["workflow_runs"]``)."""

    def __init__(
        self,
        spec: SourceSpec,
        *,
        client: MistralClient,
        store: Store,
        settings: Settings,
        clock: Callable[[], dt.datetime] = utils.utcnow,
        fence: Fence | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        if not isinstance(spec, RunSpec):
            raise TypeError(f"{spec.name} is not a workflow-runs source")
        super().__init__(
            spec, client=client, store=store, settings=settings, clock=clock, fence=fence
        )
        self.runs = spec
        self.page_size = page_size

    async def poll(self) -> PollReport:
        now = self.clock()
        state = await asyncio.to_thread(self.store.source_state, self.workspace, self.spec.name)
        before_requests = self.client.requests
        if self._reconciled(state, now):
            report = await self._recent(state, now)
        else:
            report = await self._full(state, now)
        return dataclasses.replace(report, requests=self.client.requests - before_requests)

    async def _recent(self, state: SourceState, now: dt.datetime) -> PollReport:
        """The runs that started or ended since the cursor, against the snapshot."""
        seen: dict[str, Resource] = {}
        for window in windows(state.cursor):
            async for page in self._pages(window):
                for run in self._resources(page):
                    seen[run.id] = run  # the later window read it later: it wins
        before = await asyncio.to_thread(
            self.store.load_resources, self.workspace, self.spec.name, list(seen)
        )
        result = self.diff(before, seen.values(), now)
        return await self._commit(result, now, seen.values(), state)

    def _pages(self, window: dict[str, str]) -> CursorPages:
        params = {"include_internal": "true" if self.settings.include_internal else "false"}
        return CursorPages(
            self.client,
            self.spec.list_path,
            params={**params, **window},
            page_size=self.page_size,
            items="executions",
            key=self.runs.identity,
            token_param="next_page_token",
        )

    # -- SourcePoller's seams ----------------------------------------------------------

    def listing(self) -> CursorPages:
        return self._pages({})

    async def fetch(self, path: str) -> dict[str, Any] | None:
        body = await self.client.get_object(path)
        try:
            if body is not None:
                self.runs.identity(body)
        except ValueError:
            raise GarbledError(
                "the answer is a run without an id", method="GET", path=path
            ) from None
        return body

    async def confirm(self, ids: Sequence[str]) -> tuple[list[str], list[Resource]]:
        """Direct GETs of runs a complete listing no longer shows: (gone, found after all).

        Runs are tracked as the list shows them, under its filters. A run it leaves out is
        gone — silently: runs have no deletion event — once its GET answers, whether 404
        (the API's retention) or with a run (outside the filters, such as an internal run
        once ``include_internal`` is off; for a run named without a ``run_id``, its
        execution's latest run). A GET that fails keeps it until the next reconcile.
        """
        paths = {rid: self.runs.item_url(rid) for rid in ids}
        gone, answered = await polling.confirm(self.client, paths, self.log, get=self.fetch)
        return sorted([*gone, *answered]), []

    def advance(self, cursor: int | None, seen: Iterable[Resource]) -> int | None:
        return newest(cursor, seen)
