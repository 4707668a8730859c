"""What poller knows about each polled source: paths, statuses, events, fields kept.

Pure data and functions. The HTTP side lives in ``poller.mistral``; the polling strategy
in ``poller.polling``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from poller import catalog, utils
from poller.model import Resource

BATCH_ACTIVE = frozenset({"QUEUED", "RUNNING", "CANCELLATION_REQUESTED"})
FINE_TUNING_ACTIVE = frozenset(
    {"QUEUED", "STARTED", "VALIDATING", "VALIDATED", "RUNNING", "CANCELLATION_REQUESTED"}
)
WORKFLOW_RUN_ACTIVE = frozenset({"RUNNING", "RETRYING_AFTER_ERROR"})


@dataclasses.dataclass(frozen=True, slots=True)
class SourceSpec:
    """One polled source of a workspace."""

    name: str
    """The config key: ``batch_jobs``."""
    resource: str
    """The event prefix: ``batch_job``."""
    list_path: str
    item_path: str
    """Path of one item, with ``{id}``."""
    paged: bool
    created_field: str
    created_action: str
    """``created`` for most; ``uploaded`` for files."""
    deleted_action: str | None
    """The event for a confirmed deletion, or ``None`` when a deletion is silent."""
    outcomes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Terminal status → event action (``SUCCESS`` → ``succeeded``)."""
    active_statuses: frozenset[str] = frozenset()
    """Statuses of a job still moving; empty for sources without a lifecycle."""
    milestones: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """Active status → opt-in event action (batch jobs: ``RUNNING`` → ``started``): announced
    when a poll sees a job in that status after an earlier one, where the config opts in."""
    include: Callable[[Mapping[str, Any]], bool] | None = None
    """Which listed items poller tracks (models: the fine-tuned ones)."""
    tail: bool = False
    """A paged list with a total and no time filter, read at its end between reconciles
    (``poller.listorder``); every listed item must be tracked."""
    optional: str | None = None
    """Why the source is switched off, with one warning, when its list answers 404 (an API
    that is deprecated or not offered to every account); ``None``: a 404 is a failure."""
    _keep: tuple[str, ...] = dataclasses.field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # worked out once: every listed item goes through ``to_resource``
        fields = {"id", "status", self.created_field}
        fields.update(str(s[0]) for s in catalog.selectors(self.event_types))
        object.__setattr__(self, "_keep", tuple(sorted(fields)))

    @property
    def has_lifecycle(self) -> bool:
        return bool(self.outcomes)

    @property
    def event_types(self) -> tuple[str, ...]:
        actions = [
            self.created_action,
            *dict.fromkeys(self.milestones.values()),
            *dict.fromkeys(self.outcomes.values()),
        ]
        if self.deleted_action:
            actions.append(self.deleted_action)
        return tuple(f"{self.resource}.{a}" for a in actions)

    @property
    def keep(self) -> tuple[str, ...]:
        """Top-level API fields kept in the snapshot: whatever any of its payloads read."""
        return self._keep

    def item_url(self, id: str) -> str:
        """The path of one item, its id quoted whole: ``#``, ``?``, ``/``, ``%`` stay in the id."""
        return self.item_path.format(id=urllib.parse.quote(id, safe=""))

    def tracks(self, obj: Mapping[str, Any]) -> bool:
        return self.include is None or self.include(obj)

    def is_active(self, status: str | None) -> bool:
        """A job poller must keep watching for its outcome."""
        return status is not None and status not in self.outcomes and self.has_lifecycle

    def outcome_type(self, status: str | None) -> str | None:
        action = self.outcomes.get(status or "")
        return f"{self.resource}.{action}" if action else None

    def milestone_type(self, status: str | None) -> str | None:
        """The opt-in event of a job seen in ``status``, if that status is a milestone."""
        action = self.milestones.get(status or "")
        return f"{self.resource}.{action}" if action else None

    def to_resource(self, obj: Mapping[str, Any]) -> Resource:
        """The remembered form of one API object (raises ``ValueError`` if it has no id)."""
        rid = obj.get("id")
        if not isinstance(rid, str) or not rid:
            raise ValueError(f"{self.resource} without a string id")
        created = obj.get(self.created_field)
        status = obj.get("status")
        return Resource(
            id=rid,
            status=status if isinstance(status, str) else None,
            created=created if isinstance(created, int) and not isinstance(created, bool) else None,
            data={k: obj[k] for k in self.keep if k in obj},
        )


def moment(value: Any) -> dt.datetime | None:
    """An RFC 3339 date-time, in UTC where it names no offset (``None`` for anything else)."""
    if not isinstance(value, str):
        return None
    try:
        found = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else found.replace(tzinfo=dt.UTC)


def unix_seconds(value: Any) -> int | None:
    """Whole unix seconds of an RFC 3339 date-time (``None`` for anything else)."""
    found = moment(value)
    return None if found is None else int(found.timestamp() // 1)


@dataclasses.dataclass(frozen=True, slots=True)
class RunSpec(SourceSpec):
    """Workflow runs: items named by ``run_id`` (see ``identity`` for an answer without one),
    created at their ``start_time``, a date-time rather than unix seconds."""

    def identity(self, obj: Mapping[str, Any]) -> str:
        """The id poller tracks a run by: its ``run_id``; in an answer without one,
        ``EXECUTION_ID@START_TIME`` (UTC, microseconds) — the runs of an execution that
        continued as new share their execution id, never their start. Raises
        ``ValueError`` without either id."""
        run_id = obj.get("run_id")
        if isinstance(run_id, str) and run_id:
            return run_id
        execution = obj.get("execution_id")
        if not isinstance(execution, str) or not execution:
            raise ValueError(f"{self.resource} without a run_id or an execution_id")
        start = moment(obj.get(self.created_field))
        return f"{execution}@{'' if start is None else utils.isoformat(start)}"

    def item_url(self, id: str) -> str:
        """``/workflows/runs/{run_id}``; for a run named without one, its execution's path
        (which answers the execution's latest run)."""
        execution, at, _ = id.rpartition("@")
        if at:
            return "/workflows/executions/" + urllib.parse.quote(execution, safe="")
        return SourceSpec.item_url(self, id)

    def to_resource(self, obj: Mapping[str, Any]) -> Resource:
        status = obj.get("status")
        return Resource(
            id=self.identity(obj),
            status=status if isinstance(status, str) else None,
            created=unix_seconds(obj.get(self.created_field)),
            data={k: obj[k] for k in self.keep if k in obj},
        )


def _fine_tuned(obj: Mapping[str, Any]) -> bool:
    return obj.get("type") == "fine-tuned" or str(obj.get("id", "")).startswith("ft:")


BATCH_JOBS = SourceSpec(
    name="batch_jobs",
    resource="batch_job",
    list_path="/batch/jobs",
    item_path="/batch/jobs/{id}",
    paged=True,
    created_field="created_at",
    created_action="created",
    deleted_action="deleted",
    outcomes={
        "SUCCESS": "succeeded",
        "FAILED": "failed",
        "TIMEOUT_EXCEEDED": "failed",
        "CANCELLED": "cancelled",
    },
    active_statuses=BATCH_ACTIVE,
    milestones={"RUNNING": "started"},
)

FINE_TUNING_JOBS = SourceSpec(
    name="fine_tuning_jobs",
    resource="fine_tuning_job",
    list_path="/fine_tuning/jobs",
    item_path="/fine_tuning/jobs/{id}",
    paged=True,
    created_field="created_at",
    created_action="created",
    deleted_action=None,
    outcomes={
        "SUCCESS": "succeeded",
        "FAILED": "failed",
        "FAILED_VALIDATION": "failed",
        "CANCELLED": "cancelled",
    },
    active_statuses=FINE_TUNING_ACTIVE,
    optional="the fine-tuning API answered 404 (deprecated upstream)",
)

FILES = SourceSpec(
    name="files",
    resource="file",
    list_path="/files",
    item_path="/files/{id}",
    paged=True,
    created_field="created_at",
    created_action="uploaded",
    deleted_action="deleted",
    tail=True,
)

MODELS = SourceSpec(
    name="models",
    resource="model",
    list_path="/models",
    item_path="/models/{id}",
    paged=False,
    created_field="created",
    created_action="created",
    deleted_action="deleted",
    include=_fine_tuned,
)

LIBRARIES = SourceSpec(
    name="libraries",
    resource="library",
    list_path="/libraries",
    item_path="/libraries/{id}",
    paged=True,
    created_field="created_at",
    created_action="created",
    deleted_action="deleted",
    optional="the libraries API answered 404 (not offered to this workspace)",
)
"""Libraries and their documents, polled by ``poller.libraries.source.LibraryPoller``."""

WORKFLOW_RUNS = RunSpec(
    name="workflow_runs",
    resource="workflow_run",
    list_path="/workflows/runs",
    item_path="/workflows/runs/{id}",
    paged=False,
    created_field="start_time",
    created_action="started",
    deleted_action=None,
    outcomes={
        "COMPLETED": "completed",
        "FAILED": "failed",
        "CANCELED": "canceled",
        "TERMINATED": "terminated",
        "TIMED_OUT": "timed_out",
        "CONTINUED_AS_NEW": "continued_as_new",
    },
    active_statuses=WORKFLOW_RUN_ACTIVE,
    optional="the workflows API answered 404 (not offered to this workspace)",
)

ALL: tuple[SourceSpec, ...] = (
    BATCH_JOBS,
    FINE_TUNING_JOBS,
    FILES,
    MODELS,
    LIBRARIES,
    WORKFLOW_RUNS,
)
BY_NAME: Mapping[str, SourceSpec] = {s.name: s for s in ALL}
