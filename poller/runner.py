"""Running the daemon: an APScheduler job per source, a worker per sink, one stop event.

Each source is its own job (``max_instances=1``, coalesced, no misfire limit), each poll
runs under a timeout, and after each poll the job's next run is set from the source's
pace: the active interval while it has jobs moving, the idle one otherwise, backing off
after errors. A run that falls due while the source's previous poll still runs is skipped:
counted each time, logged once per episode (``poll_skipped_still_running``, then
``poll_caught_up`` when that poll ends). Sink workers run beside the jobs as tasks.
``stop`` (set by SIGTERM/SIGINT) ends it all: polls finish their current step, workers get
a grace period, clients close.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobSubmissionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from poller import pacing, utils
from poller.app import App, Workspace
from poller.exceptions import ApiError, AuthError, LeaseLost, NotFoundError, ServiceError
from poller.polling import Polling, PollReport

log = structlog.get_logger("poller.runner")

T = TypeVar("T")

_SKIP_NOTICE = "maximum number of running instances reached"


class _SkipNoticeFilter(logging.Filter):
    """Drops APScheduler's prose line about a skipped run: the runner logs its own event."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _SKIP_NOTICE not in str(record.msg)


def _scheduler_logger() -> logging.Logger:
    logger = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkipNoticeFilter) for f in logger.filters):
        logger.addFilter(_SkipNoticeFilter())
    return logger


async def _bound(work: Awaitable[T], **context: Any) -> T:
    """Await ``work`` with ``context`` in every log line it writes (client and poller alike)."""
    with structlog.contextvars.bound_contextvars(**context):
        return await work


@dataclasses.dataclass
class SourceHealth:
    """What the runner knows of one source between polls (for pacing, status, readiness)."""

    last_report: PollReport | None = None
    last_success_at: dt.datetime | None = None
    error_streak: int = 0
    last_error: str | None = None
    disabled: str | None = None
    next_delay: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class SourceOutcome:
    """How one source's poll of ``poller once`` went: a report, an error, or switched off."""

    workspace: str
    source: str
    report: PollReport | None = None
    error: str | None = None
    disabled: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class Runner:
    """Polls every enabled source and delivers to every sink until stopped."""

    def __init__(self, app: App, *, rand: Callable[[], float] = random.random) -> None:
        self.app = app
        self.rand = rand
        self.health: dict[tuple[str, str], SourceHealth] = {}
        self.cycles = 0
        self._polls: set[asyncio.Task[Any]] = set()
        self._scheduler: AsyncIOScheduler | None = None
        self._stopping = False
        self._grace = 10.0
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._worker_stops: dict[str, asyncio.Event] = {}
        self._skipped: dict[str, int] = {}
        """Job ids whose runs are being skipped, and how many so far in this episode."""

    # -- one poll ----------------------------------------------------------------------

    async def poll_once(self, ws: Workspace, poller: Polling) -> SourceHealth:
        """Poll one source once, record the outcome, and compute when to poll it next."""
        key = (ws.name, poller.spec.name)
        health = self.health.setdefault(key, SourceHealth())
        if health.disabled:
            return health
        self.cycles += 1
        context = {"workspace": ws.name, "source": poller.spec.name, "cycle": self.cycles}
        bound = log.bind(**context)
        pace = ws.paces[poller.spec.name]
        report: PollReport | None = None
        try:
            report = await asyncio.wait_for(_bound(poller.poll(), **context), timeout=ws.timeout)
        except LeaseLost as exc:
            # another replica leads the workspace now: nothing was written, nothing failed
            bound.info("poll_fenced", reason=str(exc))
            return health
        except NotFoundError as exc:
            if poller.spec.optional is not None:
                health.disabled = poller.spec.optional
                bound.warning("source_disabled", reason=health.disabled, error=str(exc))
                self.app.observe_poll(ws.name, poller.spec.name, health, None)
                return health
            await self._failed(bound, ws, poller, health, f"{exc} (check mistral.base_url)")
        except AuthError as exc:
            await self._failed(bound, ws, poller, health, str(exc))
        except ApiError as exc:
            await self._failed(bound, ws, poller, health, str(exc))
        except TimeoutError:
            await self._failed(bound, ws, poller, health, f"poll timed out after {ws.timeout:g}s")
        except sa.exc.SQLAlchemyError as exc:
            # the store is busy or away: nothing of this poll was committed; try again later
            await self._failed(bound, ws, poller, health, f"store error: {utils.first_line(exc)}")
        else:
            if health.error_streak:
                bound.info("source_recovered", after_errors=health.error_streak)
            health.last_report = report
            health.last_success_at = utils.utcnow()
            health.error_streak = 0
            health.last_error = None
            if report.events:
                bound.info(
                    "events_recorded",
                    count=len(report.events),
                    types=sorted({e.type for e in report.events}),
                    mode=report.mode,
                )
                self.app.notify()
            bound.debug(
                "poll_done", mode=report.mode, requests=report.requests, active=report.active
            )
        active = bool(health.last_report and health.last_report.active)
        health.next_delay = pacing.next_delay(
            pace,
            active=active,
            error_streak=health.error_streak,
            retry_after=ws.gate.paused_for(),
            rand=self.rand(),
        )
        self.app.observe_poll(ws.name, poller.spec.name, health, report)
        return health

    async def _failed(
        self,
        bound: structlog.typing.FilteringBoundLogger,
        ws: Workspace,
        poller: Polling,
        health: SourceHealth,
        error: str,
    ) -> None:
        health.error_streak += 1
        error = self.app.redactor.redact(error)
        health.last_error = error
        try:
            await asyncio.to_thread(
                self.app.store.record_poll_error, ws.name, poller.spec.name, error, utils.utcnow()
            )
        except sa.exc.SQLAlchemyError as exc:
            bound.warning("poll_error_unrecorded", error=utils.first_line(exc))
        level = (
            bound.error
            if health.error_streak in (1, 5) or health.error_streak % 20 == 0
            else bound.info
        )
        level("poll_failed", error=error, error_streak=health.error_streak)

    # -- the daemon --------------------------------------------------------------------

    async def _job(self, ws: Workspace, poller: Polling, job_id: str) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._polls.add(task)
        try:
            health = await self.poll_once(ws, poller)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            log.info("poll_abandoned", workspace=ws.name, source=poller.spec.name)
            return
        finally:
            if task is not None:
                self._polls.discard(task)
            skipped = self._skipped.pop(job_id, 0)
            if skipped:
                log.info(
                    "poll_caught_up", workspace=ws.name, source=poller.spec.name, skipped=skipped
                )
        scheduler = self._scheduler
        if scheduler is None or self._stopping:
            return
        job = scheduler.get_job(job_id)
        if job is None:
            return
        if health.disabled:
            job.remove()
            return
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=health.next_delay)
        job.modify(next_run_time=when)

    def _on_skipped(self, event: JobSubmissionEvent) -> None:
        """APScheduler did not start a run: the source's previous poll is still running."""
        workspace, _, source = event.job_id.partition("/")
        self.app.metrics.observe_skipped_poll(workspace, source)
        count = self._skipped.get(event.job_id, 0)
        self._skipped[event.job_id] = count + 1
        if count == 0:
            log.warning("poll_skipped_still_running", workspace=workspace, source=source)

    def start_worker(self, name: str) -> None:
        """Start the loop of ``app.workers[name]`` (at start, and when a reload adds a sink)."""
        if self._stopping:
            return
        worker = self.app.workers[name]
        own = asyncio.Event()
        self._worker_stops[name] = own
        self._workers[name] = asyncio.create_task(
            worker.run(own, grace=self._grace), name=f"sink-{name}"
        )
        self.app.board.watch_worker(name, worker)

    async def stop_worker(self, name: str) -> None:
        """Stop one sink's loop; its deliveries in flight get the grace period to finish."""
        self.app.board.unwatch_worker(name)
        own = self._worker_stops.pop(name, None)
        task = self._workers.pop(name, None)
        if own is not None:
            own.set()
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def poll_soon(self, workspace: str, source: str, within: float) -> None:
        """Bring a source's next poll forward to at most ``within`` seconds from now."""
        job = self._scheduler.get_job(f"{workspace}/{source}") if self._scheduler else None
        if job is None or self._stopping:
            return
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=within)
        if job.next_run_time is None or job.next_run_time > when:
            job.modify(next_run_time=when)

    def hinted(self, workspace: str, source: str) -> None:
        """A job joined ``source``'s active set outside a poll: poll at its active interval."""
        ws = next((w for w in self.app.workspaces if w.name == workspace), None)
        if ws is not None and source in ws.paces:
            self.poll_soon(workspace, source, ws.paces[source].active_interval)

    async def run(self, stop: asyncio.Event, *, grace: float = 10.0) -> None:
        """Run until ``stop`` is set."""
        self._grace = grace
        self.app.wakers.append(self.hinted)
        for name in list(self.app.workers):
            self.start_worker(name)
        services = [
            asyncio.create_task(svc.run(stop), name=f"service-{svc.name}")
            for svc in self.app.services
        ]
        ended: list[str] = []

        def service_ended(task: asyncio.Task[None]) -> None:
            # a service that ends before the daemon is asked to stop (a port already taken,
            # a listener that broke) stops the daemon, which then exits with an error
            if not stop.is_set():
                ended.append(task.get_name().removeprefix("service-"))
            stop.set()

        for task in services:
            task.add_done_callback(service_ended)
        scheduler = AsyncIOScheduler(
            event_loop=asyncio.get_running_loop(), timezone=dt.UTC, logger=_scheduler_logger()
        )
        scheduler.add_listener(self._on_skipped, EVENT_JOB_MAX_INSTANCES)
        self._scheduler = scheduler
        leadership = self.app.leadership
        leading: asyncio.Task[None] | None = None
        if leadership is None:
            for ws in self.app.workspaces:
                self._lead(ws.name)
        else:
            # replicas share the store: a workspace is polled here only while leased here
            for ws in self.app.workspaces:
                self.app.board.untrack(ws.name)
                for poller in ws.pollers.values():
                    poller.fence = leadership.fence(ws.name)
            leadership.on_gained, leadership.on_lost = self._lead, self._follow
            leading = asyncio.create_task(leadership.run(stop), name="leadership")
        scheduler.start()
        log.info(
            "started",
            sources=[f"{ws.name}/{p.spec.name}" for ws, p in self.app.pollers()],
            sinks=list(self.app.workers),
            replica=leadership.replica if leadership else None,
        )
        try:
            await stop.wait()
        finally:
            self._stopping = True
            log.info("stopping")
            # no poll starts from now on; those under way get the grace to end (shutting the
            # scheduler down first would cancel them at once)
            scheduler.pause()
            if self._polls:
                await asyncio.wait(list(self._polls), timeout=grace)
            for task in list(self._polls):
                task.cancel()
            scheduler.shutdown(wait=False)
            stop.set()
            if leading is not None and leadership is not None:
                await asyncio.gather(leading, return_exceptions=True)
                await leadership.leave()
            for own in self._worker_stops.values():
                own.set()
            await asyncio.gather(*self._workers.values(), *services, return_exceptions=True)
            self._scheduler = None
            self.app.wakers.remove(self.hinted)
        for task in services:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if ended:
            raise ServiceError(f"the {', '.join(ended)} service stopped on its own; see the log")

    def _lead(self, workspace: str) -> None:
        """Start polling every source of ``workspace`` now (at start, or a lease gained)."""
        scheduler = self._scheduler
        ws = next((w for w in self.app.workspaces if w.name == workspace), None)
        if scheduler is None or ws is None or self._stopping:
            return
        for poller in ws.pollers.values():
            job_id = f"{ws.name}/{poller.spec.name}"
            pace = ws.paces[poller.spec.name]
            self.app.board.track(
                ws.name, poller.spec.name, interval=pace.interval, timeout=ws.timeout
            )
            scheduler.add_job(
                self._job,
                IntervalTrigger(seconds=max(pace.interval, 0.001), timezone=dt.UTC),
                args=(ws, poller, job_id),
                id=job_id,
                name=job_id,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
                next_run_time=dt.datetime.now(dt.UTC),
                replace_existing=True,
            )

    def _follow(self, workspace: str) -> None:
        """Stop polling ``workspace`` (its lease was lost or given up); a poll in flight is
        fenced at its write."""
        scheduler = self._scheduler
        if scheduler is not None:
            for job in scheduler.get_jobs():
                if job.id.startswith(f"{workspace}/"):
                    job.remove()
        self.app.board.untrack(workspace)

    async def once(self) -> list[SourceOutcome]:
        """One poll of every source, then one delivery pass (``poller once``)."""
        outcomes = []
        for ws, poller in self.app.pollers():
            health = await self.poll_once(ws, poller)
            outcome = SourceOutcome(ws.name, poller.spec.name, disabled=health.disabled)
            if health.error_streak:
                outcome = dataclasses.replace(outcome, error=health.last_error or "failed")
            elif not health.disabled:
                outcome = dataclasses.replace(outcome, report=health.last_report)
            outcomes.append(outcome)
        for worker in self.app.workers.values():
            await worker.flush()
        return outcomes
