"""``Workflows``: the simulated workflow runs of the workspace; thread-safe, no HTTP in it.

Its methods answer with plain dicts shaped like the API's answers: ``list_runs``,
``get_run``, ``get_execution``, ``execute``, ``execute_registration``, ``cancel`` and
``terminate`` are what the ``/v1/workflows`` routes call; ``create_run``, ``advance``,
``bulk`` and the rest are the control API (``/_sim/workflow_runs``).

Every access first *settles*: it starts the next run of each execution whose run
continued as new by now, and, when activity is on, plays the activity ticks that fell
due, all in time order — so runs move with the simulator's clock and nothing runs in
the background.
"""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import uuid
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from typing import Any

from poller.simulator import runs as rn
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.lifecycle import Timeline
from poller.simulator.runs import Json, Run, RunIndex

WORKFLOWS = ("order-fulfilment", "document-digest", "nightly-report")
"""Workflows registered in every simulated workspace (``POST .../execute`` needs one)."""
INTERNAL = "parallel-execution"
"""An internal workflow: its runs are children, left out unless ``include_internal``."""
DEPLOYMENT = "default"
MAX_CATCH_UP_TICKS = 1000
CYCLE: tuple[tuple[str, dict[str, float]], ...] = (
    ("COMPLETED", {}),
    ("FAILED", {}),
    ("COMPLETED", {"continues": 1}),
    ("TIMED_OUT", {}),
    ("COMPLETED", {"retrying_at": 1.0}),
    ("cancel", {}),
    ("terminate", {}),
)
"""What each activity tick of a cycle does: start a run planned to reach that outcome, or
cancel or terminate the newest running run (which then started one tick earlier)."""


class Workflows:
    """The workflow runs of one simulated workspace.

    ``clock`` is the simulator's (unix seconds, never backwards); ``seed`` makes ids
    reproducible; activity (``set_activity``) starts and ends runs by itself.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        *,
        seed: int | None = None,
        activity: bool = False,
        every: float = 4.0,
    ) -> None:
        self.clock = clock
        self.rng = random.Random(f"workflows:{seed}" if seed is not None else None)
        self._lock = threading.Lock()
        self.index = RunIndex()
        self.executions: dict[str, list[str]] = {}
        """Execution id → its runs' ids, oldest first."""
        self.workflows: dict[str, Json] = {}
        """Workflow name → ``{"name", "id", "registration_id", "internal"}``."""
        self.seq = itertools.count()
        # (at, seq, run_id, version): runs planned to continue as new, not started yet
        self.due: list[tuple[float, int, str, int]] = []
        self.activity = activity
        self.every = every
        self.anchor = clock()
        self.ticks = 0
        self._register_defaults()

    # ------------------------------------------------------------------ plumbing

    def new_id(self) -> str:
        """A uuid4 string, reproducible when the simulator has a seed."""
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _register_defaults(self) -> None:
        for name in WORKFLOWS:
            self.register(name)
        self.register(INTERNAL, internal=True)

    def register(self, name: str, *, internal: bool = False) -> Json:
        """The workflow called ``name``, registered now if it was not."""
        if name not in self.workflows:
            self.workflows[name] = {
                "name": name,
                "id": self.new_id(),
                "registration_id": self.new_id(),
                "internal": internal,
            }
        return self.workflows[name]

    @contextmanager
    def _moment(self) -> Iterator[float]:
        """Hold the lock over settled runs; yields the moment they are settled at."""
        with self._lock:
            yield self._settle()

    def _settle(self) -> float:
        now = self.clock()
        if self.activity:
            due = int((now - self.anchor) // self.every) + 1 - self.ticks
            if due > MAX_CATCH_UP_TICKS:
                self.ticks += due - MAX_CATCH_UP_TICKS
        while True:
            tick = self.anchor + self.every * self.ticks if self.activity else None
            self._continue_due(now if tick is None or tick > now else tick)
            if tick is None or tick > now:
                return now
            self._tick(tick)
            self.ticks += 1

    def _continue_due(self, until: float) -> None:
        """Start the next run of every execution whose run continued as new by ``until``."""
        while self.due and self.due[0][0] <= until:
            at, _, run_id, version = heapq.heappop(self.due)
            run = self.index.runs.get(run_id)
            if run is not None and run.version == version and run.status(at) == rn.CONTINUED:
                self._start(
                    at,
                    workflow=self.workflows[run.workflow_name],
                    execution_id=run.execution_id,
                    outcome=run.final if run.continues <= 1 else rn.CONTINUED,
                    continues=run.continues - 1,
                    final=run.final,
                    running_for=rn.RUNNING_FOR,
                    parent=run.parent_execution_id,
                    root=run.root_execution_id,
                    user_id=run.user_id,
                    input=run.input,
                )

    def _plan(self, run: Run) -> None:
        """File a new or rewritten run and plan its continuation, if it continues as new."""
        self.index.refile(run)
        end = run.planned_end()
        if end is not None and run.timeline[-1][0] == rn.CONTINUED:
            heapq.heappush(self.due, (end, next(self.seq), run.run_id, run.version))

    def _start(
        self,
        at: float,
        *,
        workflow: Json,
        execution_id: str | None = None,
        outcome: str = "COMPLETED",
        continues: int = 0,
        final: str = "COMPLETED",
        running_for: float = rn.RUNNING_FOR,
        retrying_at: float | None = None,
        parent: str | None = None,
        root: str | None = None,
        user_id: str | None = None,
        deployment_name: str | None = DEPLOYMENT,
        input: Any = None,
        start: float | None = None,
    ) -> Run:
        execution_id = execution_id or self.new_id()
        begun = at if start is None else start
        run = Run(
            run_id=self.new_id(),
            execution_id=execution_id,
            seq=next(self.seq),
            start=begun,
            timeline=rn.timeline(begun, outcome, running_for, retrying_at),
            workflow_name=workflow["name"],
            workflow_id=workflow["id"],
            deployment_name=deployment_name,
            parent_execution_id=parent,
            root_execution_id=root or execution_id,
            user_id=user_id,
            internal=workflow["internal"],
            continues=continues,
            final=final,
            input=input,
        )
        self.index.add(run)
        self.executions.setdefault(execution_id, []).append(run.run_id)
        self._plan(run)
        return run

    def _run(self, run_id: str) -> Run:
        run = self.index.runs.get(run_id)
        if run is None:
            raise NotFound(f"Run {run_id} not found")
        return run

    def _latest(self, execution_id: str) -> Run:
        ids = self.executions.get(execution_id)
        if not ids:
            raise NotFound(f"Workflow execution {execution_id} not found")
        return self.index.runs[ids[-1]]

    def _rewrite(self, run: Run, plan: Timeline) -> None:
        run.timeline = plan
        run.version += 1
        self._plan(run)

    def _workflow(self, identifier: str) -> Json:
        for workflow in self.workflows.values():
            if identifier in (workflow["name"], workflow["id"]):
                return workflow
        raise NotFound(f"Workflow {identifier} not found")

    # --------------------------------------------------------------------- the API

    def list_runs(
        self,
        *,
        page_size: int = 50,
        next_page_token: str | None = None,
        workflow_identifier: str | None = None,
        root_execution_id: str | None = None,
        search: str | None = None,
        status: Collection[str] | None = None,
        deployment_name: str | None = None,
        sort_by: str | None = None,
        order: str = "desc",
        start_time_after: float | None = None,
        start_time_before: float | None = None,
        end_time_after: float | None = None,
        end_time_before: float | None = None,
        user_id: str | None = None,
        workflow_tags: Collection[str] | None = None,
        include_internal: bool = True,
        search_key: Collection[str] | None = None,
    ) -> Json:
        """``GET /v1/workflows/runs``: a ``WorkflowExecutionListResponse``."""
        if not 1 <= page_size <= 1000:
            raise InvalidRequest("page_size must be between 1 and 1000")
        for name in status or ():
            if name not in rn.STATUSES:
                raise InvalidRequest(f"status {name!r} is invalid; use {', '.join(rn.STATUSES)}")
        sorting = rn.Order(by=sort_by or "start_time", descending=order == "desc")
        needle = search.lower() if search else None
        with self._moment() as now:
            workflow = (
                next(
                    (
                        w
                        for w in self.workflows.values()
                        if workflow_identifier in (w["name"], w["id"])
                    ),
                    None,
                )
                if workflow_identifier
                else None
            )

            def keep(run: Run) -> bool:
                return (
                    (include_internal or not run.internal)
                    and (
                        workflow_identifier is None
                        or run.workflow_name == (workflow or {}).get("name")
                    )
                    and (root_execution_id is None or run.root_execution_id == root_execution_id)
                    and (deployment_name is None or run.deployment_name == deployment_name)
                    and (user_id is None or run.user_id == user_id)
                    and (not status or run.status(now) in status)
                    and (
                        needle is None
                        or needle in run.workflow_name.lower()
                        or needle in run.execution_id.lower()
                    )
                    # simulated workflows carry no tags and runs no search attributes
                    and not workflow_tags
                    and not search_key
                )

            shown, token = self.index.select(
                now,
                start=(start_time_after, start_time_before),
                end=(end_time_after, end_time_before),
                order=sorting,
                keep=keep,
                size=page_size,
                token=next_page_token,
            )
            return {"executions": [rn.view(r, now) for r in shown], "next_page_token": token}

    def get_run(self, run_id: str) -> Json:
        """``GET /v1/workflows/runs/{run_id}``: a ``WorkflowExecutionResponse``."""
        with self._moment() as now:
            return rn.full_view(self._run(run_id), now)

    def get_execution(self, execution_id: str) -> Json:
        """``GET /v1/workflows/executions/{execution_id}``: its latest run."""
        with self._moment() as now:
            return rn.full_view(self._latest(execution_id), now)

    def execute(
        self,
        identifier: str,
        *,
        execution_id: str | None = None,
        input: Any = None,
        wait_for_result: bool = False,
        deployment_name: str | None = None,
    ) -> Json:
        """``POST /v1/workflows/{workflow_identifier}/execute``: its first run, started now.

        It runs for ``RUNNING_FOR`` seconds and completes; ``wait_for_result`` completes it
        at once and answers a ``WorkflowExecutionSyncResponse``.
        """
        with self._moment() as now:
            return self._execute(
                now,
                self._workflow(identifier),
                execution_id,
                input,
                wait_for_result,
                deployment_name,
            )

    def execute_registration(self, registration_id: str, **options: Any) -> Json:
        """``POST /v1/workflows/registrations/{id}/execute``: as ``execute``."""
        with self._lock:
            found = [w for w in self.workflows.values() if w["registration_id"] == registration_id]
        if not found:
            raise NotFound(f"Workflow registration {registration_id} not found")
        return self.execute(found[0]["name"], **options)

    def _execute(
        self,
        now: float,
        workflow: Json,
        execution_id: str | None,
        input: Any,
        wait: bool,
        deployment_name: str | None,
    ) -> Json:
        if execution_id is not None and execution_id in self.executions:
            if self._latest(execution_id).status(now) in rn.ACTIVE:
                raise InvalidRequest(f"Workflow execution {execution_id} is already running")
        run = self._start(
            now,
            workflow=workflow,
            execution_id=execution_id,
            running_for=0.0 if wait else rn.RUNNING_FOR,
            input=input,
            deployment_name=deployment_name or DEPLOYMENT,
        )
        if wait:
            result = rn.full_view(run, now)["result"]
            return {
                "workflow_name": run.workflow_name,
                "execution_id": run.execution_id,
                "result": result,
            }
        return rn.full_view(run, now)

    def cancel(self, execution_id: str) -> None:
        """``POST /v1/workflows/executions/{id}/cancel``: CANCELED a moment later."""
        with self._moment() as now:
            run = self._running(execution_id, now)
            self._rewrite(run, rn.cut(run.timeline, now, "CANCELED", now + rn.CANCEL_TAKES))

    def terminate(self, execution_id: str) -> None:
        """``POST /v1/workflows/executions/{id}/terminate``: TERMINATED now."""
        with self._moment() as now:
            run = self._running(execution_id, now)
            self._rewrite(run, rn.cut(run.timeline, now, "TERMINATED", now))

    def _running(self, execution_id: str, now: float) -> Run:
        run = self._latest(execution_id)
        if run.status(now) not in rn.ACTIVE:
            raise InvalidRequest(f"Workflow execution {execution_id} is not running")
        return run

    # ----------------------------------------------------------------- control

    def create_run(
        self,
        *,
        workflow_name: str = WORKFLOWS[0],
        outcome: str = "COMPLETED",
        running_for: float = rn.RUNNING_FOR,
        retrying_at: float | None = None,
        continues: int = 0,
        start_time: float | None = None,
        execution_id: str | None = None,
        parent_execution_id: str | None = None,
        internal: bool = False,
        deployment_name: str | None = DEPLOYMENT,
        user_id: str | None = None,
    ) -> Json:
        """Start a run planned to reach ``outcome`` ``running_for`` seconds after it starts.

        ``continues`` runs continue as new first (``outcome`` CONTINUED_AS_NEW means one),
        each started as the one before ends; ``retrying_at`` puts a RETRYING_AFTER_ERROR
        spell that many seconds in; a ``parent_execution_id`` makes it a child of that
        execution's tree.
        """
        if continues < 0:
            raise InvalidRequest("continues must be zero or more")
        final = outcome
        if outcome == rn.CONTINUED:
            continues, final = max(1, continues), "COMPLETED"
        with self._moment() as now:
            root = None
            if parent_execution_id is not None:
                root = self._latest(parent_execution_id).root_execution_id
            run = self._start(
                now,
                workflow=self.register(workflow_name, internal=internal),
                execution_id=execution_id,
                outcome=rn.CONTINUED if continues else final,
                continues=continues,
                final=final,
                running_for=running_for,
                retrying_at=retrying_at,
                parent=parent_execution_id,
                root=root,
                user_id=user_id,
                deployment_name=deployment_name,
                start=start_time,
            )
            return rn.full_view(run, now)

    def advance(self, run_id: str, status: str | None = None, at: float | None = None) -> Json:
        """Move a run to its next status, or to ``status``, now — or at ``at``, a moment
        between its start and now: a move the API shows late (its ``end_time`` older than
        the moment it is listed ended)."""
        with self._moment() as now:
            run = self._run(run_id)
            when = now if at is None else at
            if not run.start <= when <= now:
                raise InvalidRequest("at must be between the run's start and now")
            final = run.final if not run.continues else rn.CONTINUED
            self._rewrite(run, rn.moved(run.timeline, when, status, final))
            self._continue_due(now)
            return rn.full_view(run, now)

    def expire(self, run_id: str) -> Json:
        """Forget an ended run, as the API's retention does: ``{"run_id", "expired": true}``."""
        with self._moment() as now:
            run = self._run(run_id)
            if run.end(now) is None:
                raise InvalidRequest(f"Run {run_id} has not ended; only ended runs expire")
            self.index.remove(run)
            runs = self.executions[run.execution_id]
            runs.remove(run_id)
            if not runs:
                del self.executions[run.execution_id]
            return {"run_id": run_id, "expired": True}

    def bulk(self, *, count: int, status: str = "COMPLETED", span: float = 30 * 86400.0) -> Json:
        """Quickly add ``count`` runs that ended over the past ``span`` seconds."""
        if count < 0:
            raise InvalidRequest("bulk count must be zero or more")
        if span <= 0:
            raise InvalidRequest("bulk span must be more than 0 seconds")
        ends = [o for o in rn.OUTCOMES if o != rn.CONTINUED]
        if status not in ends:
            raise InvalidRequest(f"bulk status {status!r} is invalid; use {', '.join(ends)}")
        with self._moment() as now:
            latest = now - 3600.0
            step = span / max(1, count)
            names = list(WORKFLOWS)
            made = []
            for n in range(count):
                start = latest - span + n * step
                workflow = self.workflows[names[n % len(names)]]
                execution = self.new_id()
                made.append(
                    Run(
                        run_id=self.new_id(),
                        execution_id=execution,
                        seq=next(self.seq),
                        start=start,
                        timeline=rn.timeline(start, status, 1.0 + n % 600),
                        workflow_name=workflow["name"],
                        workflow_id=workflow["id"],
                        deployment_name=DEPLOYMENT,
                        root_execution_id=execution,
                    )
                )
            self.index.load(made)
            for run in made:
                self.executions[run.execution_id] = [run.run_id]
            return {"workflow_runs": count}

    def registered(self) -> list[Json]:
        """The registered workflows: name, id, registration id, whether internal."""
        with self._lock:
            return [dict(w) for w in self.workflows.values()]

    def counts(self) -> int:
        with self._lock:
            return len(self.index)

    def reset(self) -> None:
        """Forget every run (the registered workflows stay)."""
        with self._lock:
            self.index.clear()
            self.executions.clear()
            self.due.clear()
            self.anchor, self.ticks = self.clock(), 0

    def set_activity(self, enabled: bool, every: float | None = None) -> None:
        """Start and end runs by themselves (``poller demo``), a tick every ``every`` seconds."""
        with self._lock:
            if enabled and (not self.activity or (every and every != self.every)):
                self.anchor, self.ticks = self.clock(), 0
            self.activity = enabled
            self.every = every or self.every

    def demo(self) -> None:
        """Some history: runs of the past hours, one of them continued as new twice."""
        with self._moment() as now:
            hour = 3600.0
            for hours_ago, name, outcome, continues in (
                (5.0, "nightly-report", "COMPLETED", 0),
                (3.5, "order-fulfilment", "FAILED", 0),
                (2.0, "document-digest", "COMPLETED", 2),
                (1.0, "order-fulfilment", "COMPLETED", 0),
            ):
                begun = now - hours_ago * hour
                self._start(
                    begun,
                    workflow=self.workflows[name],
                    outcome=rn.CONTINUED if continues else outcome,
                    continues=continues,
                    final=outcome,
                    running_for=600.0,
                )
            self._continue_due(now)

    # ----------------------------------------------------------------- activity

    def _tick(self, at: float) -> None:
        action, options = CYCLE[self.ticks % len(CYCLE)]
        running = [
            r
            for r in self.index.runs.values()
            if not r.internal and r.status(at) in rn.ACTIVE and r.start < at
        ]
        if action in ("cancel", "terminate"):
            if running:
                newest = max(running, key=lambda r: r.key)
                ended = (
                    ("CANCELED", at + rn.CANCEL_TAKES) if action == "cancel" else ("TERMINATED", at)
                )
                self._rewrite(newest, rn.cut(newest.timeline, at, *ended))
            action, options = "COMPLETED", {"running_for": 12.0}
        name = WORKFLOWS[self.ticks % len(WORKFLOWS)]
        continues = int(options.get("continues", 0))
        run = self._start(
            at,
            workflow=self.workflows[name],
            outcome=rn.CONTINUED if continues else action,
            continues=continues,
            final=action,
            running_for=float(options.get("running_for", 6.0)),
            retrying_at=options.get("retrying_at"),
        )
        if self.ticks % len(CYCLE) == 0:  # a child run of an internal workflow
            self._start(
                at,
                workflow=self.workflows[INTERNAL],
                running_for=3.0,
                parent=run.execution_id,
                root=run.root_execution_id,
            )
