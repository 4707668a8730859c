"""Job lifecycles as timelines: pure functions from a plan and a moment to a status.

A job's *timeline* is the list of ``(status, entered_at)`` it has gone and will go
through; its status at a moment is the last entry entered at or before it. A job is
created with a whole timeline planned from its *outcome* and the seconds it spends
in each phase, so reading it never needs a background task. ``advance`` rewrites the
future part of a timeline (a control request, a cancellation, ``/start``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from poller.simulator.errors import InvalidRequest

Phase = tuple[str, float]
Timeline = list[Phase]

CANCELLATION_REQUESTED = "CANCELLATION_REQUESTED"
CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class Lifecycle:
    """The state machine of one kind of job."""

    name: str
    statuses: tuple[str, ...]
    terminal: frozenset[str]
    # the statuses a job goes through, in order, before its outcome
    main: tuple[str, ...]
    # outcome -> the statuses it is reached through (when not ``main``)
    paths: Mapping[str, tuple[str, ...]]
    # status -> the statuses it may move to directly
    edges: Mapping[str, tuple[str, ...]]
    durations: Mapping[str, float]

    @property
    def outcomes(self) -> tuple[str, ...]:
        """The statuses a job may be planned to end in."""
        return tuple(self.paths)

    def path(self, outcome: str) -> tuple[str, ...]:
        """Every status a job planned to end in ``outcome`` goes through."""
        return self.paths[outcome]

    def route(self, start: str, goal: str) -> tuple[str, ...] | None:
        """The shortest chain of direct moves from ``start`` to ``goal`` (both included)."""
        came_from: dict[str, str | None] = {start: None}
        todo = deque([start])
        while todo:
            status = todo.popleft()
            if status == goal:
                chain = [status]
                while (prev := came_from[chain[-1]]) is not None:
                    chain.append(prev)
                return tuple(reversed(chain))
            for nxt in self.edges.get(status, ()):
                if nxt not in came_from:
                    came_from[nxt] = status
                    todo.append(nxt)
        return None


def _paths(ends: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    return {outcome: (*prefix, outcome) for outcome, prefix in ends.items()}


_BATCH_MAIN = ("QUEUED", "RUNNING")
BATCH = Lifecycle(
    name="batch_jobs",
    statuses=(
        "QUEUED",
        "RUNNING",
        "SUCCESS",
        "FAILED",
        "TIMEOUT_EXCEEDED",
        CANCELLATION_REQUESTED,
        CANCELLED,
    ),
    terminal=frozenset({"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", CANCELLED}),
    main=_BATCH_MAIN,
    paths=_paths(
        {
            "SUCCESS": _BATCH_MAIN,
            "FAILED": _BATCH_MAIN,
            "TIMEOUT_EXCEEDED": _BATCH_MAIN,
            CANCELLED: (*_BATCH_MAIN, CANCELLATION_REQUESTED),
        },
    ),
    edges={
        "QUEUED": ("RUNNING", CANCELLATION_REQUESTED),
        "RUNNING": ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", CANCELLATION_REQUESTED),
        CANCELLATION_REQUESTED: (CANCELLED,),
    },
    durations={"QUEUED": 2.0, "RUNNING": 5.0, CANCELLATION_REQUESTED: 3.0},
)

_FT_MAIN = ("QUEUED", "VALIDATING", "VALIDATED", "RUNNING")
FINE_TUNING = Lifecycle(
    name="fine_tuning_jobs",
    statuses=(
        "QUEUED",
        "STARTED",
        "VALIDATING",
        "VALIDATED",
        "RUNNING",
        "FAILED_VALIDATION",
        "FAILED",
        "SUCCESS",
        CANCELLED,
        CANCELLATION_REQUESTED,
    ),
    terminal=frozenset({"FAILED_VALIDATION", "FAILED", "SUCCESS", CANCELLED}),
    main=_FT_MAIN,
    paths=_paths(
        {
            "SUCCESS": _FT_MAIN,
            "FAILED": _FT_MAIN,
            "FAILED_VALIDATION": ("QUEUED", "VALIDATING"),
            CANCELLED: (*_FT_MAIN, CANCELLATION_REQUESTED),
        },
    ),
    edges={
        "QUEUED": ("VALIDATING", CANCELLATION_REQUESTED),
        "VALIDATING": ("VALIDATED", "FAILED_VALIDATION", CANCELLATION_REQUESTED),
        "VALIDATED": ("RUNNING", CANCELLATION_REQUESTED),
        "RUNNING": ("SUCCESS", "FAILED", CANCELLATION_REQUESTED),
        CANCELLATION_REQUESTED: (CANCELLED,),
    },
    durations={
        "QUEUED": 3.0,
        "VALIDATING": 3.0,
        "VALIDATED": 3.0,
        "RUNNING": 8.0,
        CANCELLATION_REQUESTED: 3.0,
    },
)

# the status a job held by ``auto_start: false`` waits in until it is started
HOLD = "VALIDATED"


def schedule(
    lc: Lifecycle,
    status: str,
    at: float,
    outcome: str,
    durations: Mapping[str, float],
    *,
    hold: bool = False,
) -> Timeline:
    """The timeline of a job entering ``status`` at ``at`` and going on to ``outcome``.

    With ``hold`` the timeline stops once it enters ``VALIDATED`` (``auto_start: false``).
    """
    path = lc.path(outcome)
    rest = path[path.index(status) :] if status in path else (lc.route(status, outcome) or ())
    timeline: Timeline = [(status, at)]
    for prev, nxt in pairwise(rest):
        if hold and prev == HOLD:
            break
        at += durations.get(prev, lc.durations.get(prev, 0.0))
        timeline.append((nxt, at))
    return timeline


def index_at(timeline: Sequence[Phase], t: float) -> int:
    """The index of the entry a job is in at ``t`` (0 before it was created)."""
    i = 0
    for j, (_, at) in enumerate(timeline):
        if at <= t:
            i = j
        else:
            break
    return i


def status_at(timeline: Sequence[Phase], t: float) -> str:
    """The status of a job at ``t``."""
    return timeline[index_at(timeline, t)][0]


def entered_at(timeline: Sequence[Phase], status: str, t: float) -> float | None:
    """When the job entered ``status``, if it had by ``t``."""
    found = None
    for name, at in timeline:
        if at > t:
            break
        if name == status:
            found = at
    return found


def progress(timeline: Sequence[Phase], t: float, reach: float) -> float:
    """The share of its work a job has done at ``t``: linear while running, up to ``reach``."""
    start = entered_at(timeline, "RUNNING", t)
    if start is None:
        return 0.0
    end = next((at for name, at in timeline if at > start and name != "RUNNING"), None)
    if end is None:
        return 0.0
    if t >= end or end <= start:
        return reach
    return reach * (t - start) / (end - start)


def outcome_through(lc: Lifecycle, status: str, outcome: str) -> str:
    """The outcome a job planned for ``outcome`` heads to once it is in ``status``."""
    if status in lc.path(outcome):
        return outcome
    if status in lc.terminal:
        return status
    if status == CANCELLATION_REQUESTED:
        return CANCELLED
    return "SUCCESS"


def advance(
    lc: Lifecycle,
    timeline: Sequence[Phase],
    t: float,
    outcome: str,
    durations: Mapping[str, float],
    target: str | None = None,
    *,
    hold: bool = False,
) -> tuple[Timeline, str]:
    """Move a job to ``target`` (default: its next status) at ``t``; the new timeline and outcome.

    Statuses passed through on the way are entered at ``t`` too; the phases after
    ``target`` keep their planned durations from ``t``. Raises ``InvalidRequest`` when
    ``target`` is not a status of ``lc`` or cannot be reached from the current one.
    """
    i = index_at(timeline, t)
    current = timeline[i][0]
    if current in lc.terminal:
        raise InvalidRequest(f"the job is {current}, a final status; it cannot move on")
    if target is None:
        if i + 1 < len(timeline):
            target = timeline[i + 1][0]
        else:  # held in VALIDATED until started
            path = lc.path(outcome)
            target = path[path.index(current) + 1]
    elif target not in lc.statuses:
        raise InvalidRequest(f"{target!r} is not a status of {lc.name}: {', '.join(lc.statuses)}")
    planned = [name for name, _ in timeline[i:]]
    if target in planned[1:]:
        route: tuple[str, ...] | None = tuple(planned[: planned.index(target, 1) + 1])
    else:
        route = lc.route(current, target)
    if route is None or len(route) < 2:
        raise InvalidRequest(f"a job in {current} cannot move to {target}")
    outcome = outcome_through(lc, target, outcome)
    # a job held for /start stays held only while it has not got past VALIDATED
    hold = hold and HOLD in lc.main and target in lc.main[: lc.main.index(HOLD) + 1]
    done = list(timeline[:i])
    passed = [(name, t) for name in route[:-1]][1:]
    rest = schedule(lc, target, t, outcome, durations, hold=hold)
    return [*done, (current, timeline[i][1]), *passed, *rest], outcome
