"""What every resource family of the simulator builds on: the lock, the clock, and the
control API that spans kinds (advance, cancel, delete, bulk, reset, activity, faults,
auth, request stats).

A resource family is a subclass of ``SimulatorCore`` adding its ``/v1`` methods; the
``Simulator`` composes them all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from poller.simulator import activity as act
from poller.simulator import inference, listing, seeding, world
from poller.simulator.errors import InvalidRequest
from poller.simulator.faults import Fault, FaultQueue, make_fault
from poller.simulator.lifecycle import CANCELLATION_REQUESTED
from poller.simulator.records import Json
from poller.simulator.stats import RequestStats
from poller.simulator.world import BATCH_JOBS, FILES, FINE_TUNING_JOBS, KINDS, MODELS

_DELETED_OBJECT = {BATCH_JOBS: "batch", FINE_TUNING_JOBS: "job", FILES: "file", MODELS: "model"}


class SimulatorCore:
    """The simulated workspace's shared state and its kind-independent operations."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        api_key: str | None = None,
        auth_header: str = "Authorization",
        fine_tuning: bool = True,
        activity: bool = False,
        activity_every: float = act.DEFAULT_EVERY,
        scenario: str | None = None,
        files_order: str = "newest",
    ) -> None:
        if scenario not in (None, "demo"):
            raise InvalidRequest(f"scenario {scenario!r} is unknown; use 'demo'")
        self.files_order = listing.file_order(files_order)
        self.api_key = api_key
        self.auth_header = auth_header
        self.fine_tuning = fine_tuning
        self._lock = threading.Lock()
        self._world = world.World(
            clock=clock,
            seed=seed,
            fine_tuning=fine_tuning,
            activity=activity,
            activity_every=activity_every,
        )
        self._faults = FaultQueue()
        self._fault_ids = 0
        self._stats = RequestStats()
        self.inference = inference.Inference(seed=seed)
        """The synchronous endpoints' stream counters and token pacing."""
        if scenario == "demo":
            seeding.demo(self._world, self._world.now())

    @contextmanager
    def _moment(self) -> Iterator[float]:
        """Hold the lock over a settled world; yields the moment it is settled at."""
        with self._lock:
            yield self._world.settle()

    # ---------------------------------------------------------------- clock

    def now(self) -> float:
        """The simulator's time, in unix seconds."""
        with self._lock:
            return self._world.now()

    def advance_clock(self, seconds: float) -> Json:
        """Move the clock forward by ``seconds``: ``{"now": unix}``."""
        if seconds < 0:
            raise InvalidRequest("the clock only moves forward; advance must be zero or more")
        with self._lock:
            self._world.offset += seconds
            return {"now": self._world.now()}

    # ------------------------------------------------------ any kind of resource

    def advance(self, kind: str, id: str, status: str | None = None) -> Json:
        """Move a job to its next status now, or to ``status`` through the ones between."""
        if kind not in (BATCH_JOBS, FINE_TUNING_JOBS):
            raise InvalidRequest(f"only jobs have statuses; {kind!r} does not")
        with self._moment() as now:
            job = self._world.get(kind, id)
            self._world.rewrite(kind, job, now, status)
            return self._world.view(kind, job, now)

    def cancel(self, kind: str, id: str) -> Json:
        """Request a job's cancellation: CANCELLATION_REQUESTED now, CANCELLED 3 s later."""
        if kind not in (BATCH_JOBS, FINE_TUNING_JOBS):
            raise InvalidRequest(f"only jobs can be cancelled; {kind!r} cannot")
        with self._moment() as now:
            job = self._world.get(kind, id)
            if job.status != CANCELLATION_REQUESTED:
                self._world.rewrite(kind, job, now, CANCELLATION_REQUESTED)
            return self._world.view(kind, job, now)

    def delete(self, kind: str, id: str) -> Json:
        """Delete any resource: ``{"id", "object", "deleted": true}``."""
        with self._moment():
            self._world.remove(kind, id)
            return {"id": id, "object": _DELETED_OBJECT[kind], "deleted": True}

    def bulk(
        self,
        *,
        batch_jobs: int = 0,
        fine_tuning_jobs: int = 0,
        files: int = 0,
        status: str = "SUCCESS",
        span: float = 30 * 86400.0,
    ) -> Json:
        """Quickly add finished resources created over the past ``span`` seconds."""
        with self._moment() as now:
            seeding.bulk(
                self._world,
                now,
                batch_jobs=batch_jobs,
                fine_tuning_jobs=fine_tuning_jobs,
                files=files,
                status=status,
                span=span,
            )
            return {"batch_jobs": batch_jobs, "fine_tuning_jobs": fine_tuning_jobs, "files": files}

    def counts(self) -> Json:
        """How many resources of each kind there are."""
        with self._moment():
            return {kind: len(self._world.table(kind)) for kind in KINDS}

    def reset(self) -> Json:
        """Forget every resource (base models excepted), fault and request count."""
        with self._lock:
            self._world.clear()
            self._faults.clear()
            self._stats.clear()
            self.inference.reset()
            return {"reset": True}

    # --------------------------------------------------------------- activity

    def set_activity(self, enabled: bool, every: float | None = None) -> Json:
        """Turn self-generated traffic on or off; ``every`` seconds between ticks."""
        if every is not None and every <= 0:
            raise InvalidRequest("every must be more than 0 seconds")
        with self._moment() as now:
            activity = self._world.activity
            if enabled and (not activity.enabled or (every and every != activity.every)):
                activity.restart(now)
            activity.enabled = enabled
            activity.every = every or activity.every
            return activity.as_dict()

    def activity(self) -> Json:
        """Whether activity is on, its period and when its next tick is due."""
        with self._lock:
            return self._world.activity.as_dict()

    # ----------------------------------------------------- faults, auth, stats

    def add_fault(
        self,
        *,
        kind: str,
        match: Mapping[str, str] | None = None,
        count: int = 1,
        status: int | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        seconds: float | None = None,
        drop: int | None = None,
    ) -> Json:
        """Queue a fault for the next ``count`` matching ``/v1`` requests (-1: until cleared)."""
        with self._lock:
            self._fault_ids += 1
            fault = make_fault(
                f"fault_{self._fault_ids}",
                kind=kind,
                match=match,
                count=count,
                status=status,
                body=body,
                headers=headers,
                seconds=seconds,
                drop=drop,
            )
            self._faults.add(fault)
            return fault.as_dict()

    def clear_faults(self) -> Json:
        """Drop every queued fault: ``{"cleared": n}``."""
        with self._lock:
            return {"cleared": self._faults.clear()}

    def faults(self) -> list[Json]:
        """The queued faults, in the order they are tried."""
        with self._lock:
            return self._faults.as_list()

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The fault a request to ``path`` is to suffer, if any (counted as a hit)."""
        with self._lock:
            return self._faults.take(method, path)

    def authorized(self, header: str | None) -> bool:
        """Whether a request whose auth header has this value may go through."""
        if self.api_key is None:
            return True
        if header is None:
            return False
        bare = self.auth_header.lower() != "authorization" and header == self.api_key
        return bare or header == f"Bearer {self.api_key}"

    def record_request(self, method: str, route: str, path: str, query: str, url: str) -> None:
        """Count one ``/v1`` request under ``"METHOD route"``."""
        with self._lock:
            self._stats.record(method, route, path, query, url, self._world.now())

    def stats(self) -> Json:
        """``{"total", "by_route": {"GET /v1/batch/jobs": n}, "recent": [...]}``."""
        with self._lock:
            return self._stats.as_dict()

    def reset_stats(self) -> Json:
        """Forget the requests counted so far."""
        with self._lock:
            self._stats.clear()
            return {"reset": True}
