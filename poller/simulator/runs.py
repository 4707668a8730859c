"""Workflow runs as the simulator keeps them: records, timelines, indexes and views.

A run carries its whole planned timeline — ``RUNNING``, perhaps a spell of
``RETRYING_AFTER_ERROR``, then its outcome — and its status at a moment is read off it
(``lifecycle.status_at``), so nothing runs in the background. A run planned to end in
``CONTINUED_AS_NEW`` makes the workspace start the next run of its execution at that
moment (``workflows.Workflows`` does, when it settles).

``RunIndex`` keeps every run's key by start time and by planned end, so that the time
filters of ``GET /v1/workflows/runs`` are bisections whatever the number of runs, and
pages follow a keyset token: the key of the last run shown, so runs started meanwhile
never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from poller.simulator import lifecycle
from poller.simulator.errors import InvalidRequest
from poller.simulator.index import Key, SortedKeys
from poller.simulator.lifecycle import Timeline

Json = dict[str, Any]

RUNNING = "RUNNING"
RETRYING = "RETRYING_AFTER_ERROR"
CONTINUED = "CONTINUED_AS_NEW"
STATUSES = (
    RUNNING,
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "TERMINATED",
    CONTINUED,
    "TIMED_OUT",
    RETRYING,
)
"""``WorkflowExecutionStatus``, in the spec's order."""
ACTIVE = (RUNNING, RETRYING)
OUTCOMES = ("COMPLETED", "FAILED", "CANCELED", "TERMINATED", "TIMED_OUT", CONTINUED)
RUNNING_FOR = 5.0
"""Seconds a run runs unless told otherwise."""
RETRYING_FOR = 2.0
CANCEL_TAKES = 1.0
"""Seconds between a cancellation request and the run's CANCELED (the workflow handles it)."""
NOT_ENDED = 1e18
"""The end-time sort value of a run still going: after every real end."""


@dataclass(slots=True, eq=False, kw_only=True)
class Run:
    """One run of a workflow execution."""

    run_id: str
    execution_id: str
    seq: int
    start: float
    timeline: Timeline
    workflow_name: str
    workflow_id: str | None
    deployment_name: str | None = None
    parent_execution_id: str | None = None
    root_execution_id: str
    user_id: str | None = None
    internal: bool = False
    continues: int = 0
    """How many more runs continue as new after this one (0: this one ends the execution)."""
    final: str = "COMPLETED"
    """The outcome the last run of the execution is planned to reach."""
    input: Any = None
    version: int = 0
    """Bumped whenever the timeline is rewritten, so that a stale continuation is ignored."""
    end_key: Key | None = field(default=None)
    """The key the run is filed under in the end index (its planned end), if it has one."""

    @property
    def key(self) -> Key:
        return (self.start, self.seq, self.run_id)

    def status(self, now: float) -> str:
        return lifecycle.status_at(self.timeline, now)

    def planned_end(self) -> float | None:
        """When the run reaches its outcome, as planned now."""
        status, at = self.timeline[-1]
        return at if status in OUTCOMES else None

    def end(self, now: float) -> float | None:
        """When the run ended, if it had by ``now``."""
        end = self.planned_end()
        return end if end is not None and end <= now else None


def timeline(
    start: float,
    outcome: str,
    running_for: float = RUNNING_FOR,
    retrying_at: float | None = None,
    retrying_for: float = RETRYING_FOR,
) -> Timeline:
    """A run's plan: RUNNING from ``start``, a retry spell ``retrying_at`` seconds in if
    given, and ``outcome`` ``running_for`` seconds after the start (plus the spell)."""
    if outcome not in OUTCOMES:
        raise InvalidRequest(
            f"run outcome {outcome!r} is invalid; use one of {', '.join(OUTCOMES)}"
        )
    if min(running_for, retrying_for) < 0 or (retrying_at is not None and retrying_at < 0):
        raise InvalidRequest("run durations must be zero or more seconds")
    plan: Timeline = [(RUNNING, start)]
    end = start + running_for
    if retrying_at is not None and retrying_at <= running_for:
        plan += [(RETRYING, start + retrying_at), (RUNNING, start + retrying_at + retrying_for)]
        end += retrying_for
    return [*plan, (outcome, end)]


def moved(plan: Timeline, now: float, target: str | None, outcome: str) -> Timeline:
    """The plan of a run moved at ``now`` to ``target`` (default: its next status).

    Into an outcome, the run ends there; into RETRYING_AFTER_ERROR, it runs again after
    the spell and reaches ``outcome`` as a fresh run would; into RUNNING, it reaches
    ``outcome`` after a run's usual time.
    """
    i = lifecycle.index_at(plan, now)
    current = plan[i][0]
    if current in OUTCOMES:
        raise InvalidRequest(f"the run is {current}, a final status; it cannot move on")
    if target is None:
        target = plan[i + 1][0]
    if target not in STATUSES:
        raise InvalidRequest(f"{target!r} is not a run status: {', '.join(STATUSES)}")
    if target == current:
        raise InvalidRequest(f"the run is {current} already")
    done = [*plan[: i + 1], (target, now)]
    if target in OUTCOMES:
        return done
    if target == RETRYING:
        return [*done, (RUNNING, now + RETRYING_FOR), (outcome, now + RETRYING_FOR + RUNNING_FOR)]
    return [*done, (outcome, now + RUNNING_FOR)]


def cut(plan: Timeline, now: float, outcome: str, at: float) -> Timeline:
    """The plan of a run stopped at ``now``: what it went through, then ``outcome`` at ``at``."""
    current = lifecycle.status_at(plan, now)
    if current in OUTCOMES:
        raise InvalidRequest(f"the run is {current}, a final status")
    return [*plan[: lifecycle.index_at(plan, now) + 1], (outcome, at)]


def iso(moment: float) -> str:
    """A run's date-time as the API writes it: RFC 3339, UTC, microseconds."""
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def view(run: Run, now: float) -> Json:
    """A ``WorkflowExecutionWithoutResultResponse`` (an item of the runs list)."""
    end = run.end(now)
    return {
        "workflow_name": run.workflow_name,
        "workflow_id": run.workflow_id,
        "deployment_name": run.deployment_name,
        "execution_id": run.execution_id,
        "parent_execution_id": run.parent_execution_id,
        "root_execution_id": run.root_execution_id,
        "run_id": run.run_id,
        "user_id": run.user_id,
        "status": run.status(now),
        "start_time": iso(run.start),
        "end_time": None if end is None else iso(end),
        "total_duration_ms": None if end is None else round((end - run.start) * 1000),
    }


def full_view(run: Run, now: float) -> Json:
    """A ``WorkflowExecutionResponse``: the list item and the run's result, once it has one."""
    completed = run.status(now) == "COMPLETED"
    result = {"workflow": run.workflow_name, "input": run.input} if completed else None
    return {**view(run, now), "result": result}


# ------------------------------------------------------------------------- listing


@dataclass(frozen=True, slots=True)
class Order:
    """How a listing is sorted: by ``start_time`` or ``end_time``, ``desc`` or ``asc``."""

    by: str = "start_time"
    descending: bool = True

    def value(self, run: Run, now: float) -> float:
        if self.by == "start_time":
            return run.start
        end = run.end(now)
        return NOT_ENDED if end is None else end

    def key(self, run: Run, now: float) -> Key:
        return (self.value(run, now), run.seq, run.run_id)

    def token(self, key: Key) -> str:
        raw = json.dumps([self.by, self.descending, *key], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    def after(self, token: str) -> Key:
        """The key a ``next_page_token`` of this order resumes after."""
        try:
            padded = token + "=" * (-len(token) % 4)
            by, descending, value, seq, run_id = json.loads(base64.urlsafe_b64decode(padded))
            key: Key = (float(value), int(seq), str(run_id))
        except (ValueError, TypeError, binascii.Error):
            raise InvalidRequest("next_page_token is not a token this list gave") from None
        if (by, descending) != (self.by, self.descending):
            raise InvalidRequest("next_page_token was given for another sort order")
        return key


def span(keys: Sequence[Key], after: float | None, before: float | None) -> tuple[int, int]:
    """The index range of keys whose time is in ``[after, before]`` (both inclusive)."""
    lo = 0 if after is None else bisect_left(keys, (after, -1, ""))
    hi = len(keys) if before is None else bisect_right(keys, (before, 1 << 62, "\uffff"))
    return lo, max(lo, hi)


class RunIndex:
    """Every run by id, and their keys by start time and by planned end."""

    def __init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.by_start = SortedKeys()
        self.by_end = SortedKeys()

    def __len__(self) -> int:
        return len(self.runs)

    def add(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self.by_start.add(run.key)
        self.refile(run)

    def load(self, runs: Iterable[Run]) -> None:
        """Add many runs at once (one sort, not one insertion each)."""
        fresh = list(runs)
        for run in fresh:
            self.runs[run.run_id] = run
            end = run.planned_end()
            run.end_key = None if end is None else (end, run.seq, run.run_id)
        self.by_start = SortedKeys([*self.by_start.keys, *(r.key for r in fresh)])
        ends = [r.end_key for r in fresh if r.end_key is not None]
        self.by_end = SortedKeys([*self.by_end.keys, *ends])

    def remove(self, run: Run) -> None:
        del self.runs[run.run_id]
        self.by_start.discard(run.key)
        if run.end_key is not None:
            self.by_end.discard(run.end_key)

    def refile(self, run: Run) -> None:
        """File a run under its planned end again (its timeline changed)."""
        if run.end_key is not None:
            self.by_end.discard(run.end_key)
        end = run.planned_end()
        run.end_key = None if end is None else (end, run.seq, run.run_id)
        if run.end_key is not None:
            self.by_end.add(run.end_key)

    def clear(self) -> None:
        self.runs.clear()
        self.by_start = SortedKeys()
        self.by_end = SortedKeys()

    def select(
        self,
        now: float,
        *,
        start: tuple[float | None, float | None],
        end: tuple[float | None, float | None],
        order: Order,
        keep: Callable[[Run], bool],
        size: int,
        token: str | None,
    ) -> tuple[list[Run], str | None]:
        """One page of the runs the filters allow, in ``order`` after ``token``, and the
        next page's token (``None`` on the last page).

        By start time without an end filter (what a full listing asks), a page is a
        bisection and a walk of about ``size`` runs; otherwise the runs within the time
        filters are sorted first, through the end index when an end filter narrows them.
        """
        resume = order.after(token) if token is not None else None
        walk: Iterable[Run]
        if order.by == "start_time" and end == (None, None):
            keys = self.by_start.keys
            lo, hi = span(keys, *start)
            if resume is not None and order.descending:
                hi = min(hi, bisect_left(keys, resume))
            elif resume is not None:
                lo = max(lo, bisect_right(keys, resume))
            steps = range(hi - 1, lo - 1, -1) if order.descending else range(lo, hi)
            walk = (self.runs[keys[i][2]] for i in steps)
        else:
            chosen = [r for r in self._within(now, start, end) if keep(r)]
            chosen.sort(key=lambda r: order.key(r, now), reverse=order.descending)
            if resume is not None:
                chosen = [
                    r
                    for r in chosen
                    if (
                        order.key(r, now) < resume
                        if order.descending
                        else order.key(r, now) > resume
                    )
                ]
            walk = chosen
        found: list[Run] = []
        for run in walk:
            if keep(run):
                found.append(run)
                if len(found) > size:
                    break
        shown = found[:size]
        more = len(found) > size and bool(shown)
        return shown, order.token(order.key(shown[-1], now)) if more else None

    def _within(
        self,
        now: float,
        start: tuple[float | None, float | None],
        end: tuple[float | None, float | None],
    ) -> Iterator[Run]:
        """The runs within the time filters; an end filter leaves out runs still going."""
        if end == (None, None):
            keys = self.by_start.keys
            lo, hi = span(keys, *start)
            return (self.runs[k[2]] for k in keys[lo:hi])
        keys = self.by_end.keys
        lo, hi = span(keys, end[0], now if end[1] is None else min(end[1], now))
        low, high = start
        return (
            run
            for run in (self.runs[k[2]] for k in keys[lo:hi])
            if (low is None or run.start >= low) and (high is None or run.start <= high)
        )
