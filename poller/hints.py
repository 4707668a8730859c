"""Hints: what a call that passed through poller says about a polled resource, at once.

Creating a batch job through the proxy (or ``poller action request``) need not wait for
the next poll to be announced: the API's 2xx answer already holds the job. ``read`` turns
such a call into a ``Hint``; ``plan`` compares it with the snapshot exactly as a poll
would (``diff.diff``), so the event carries the id polling would give it and the snapshot
row written beside it keeps the next poll from announcing it again.

- ``POST /batch/jobs``, ``POST /fine_tuning/jobs``, ``POST /files``: created, the answer
  is the new resource;
- ``POST /batch/jobs/{id}/cancel``, ``POST /fine_tuning/jobs/{id}/cancel``: changed, the
  answer is the job as it is now;
- ``DELETE /batch/jobs/{id}``, ``DELETE /files/{id}``, ``DELETE /models/{id}``: deleted,
  when the answer says ``deleted: true``;
- libraries and their documents: created, deleted, uploaded, reprocessed, read by
  ``poller.libraries.hints`` (a hint's ``change``);
- ``POST /workflows/{workflow}/execute``, ``POST /workflows/registrations/{id}/execute``:
  created, the answer is the new run (when it names its ``run_id``: an answer without one,
  a ``wait_for_result`` one, is left to polling);
- ``POST /workflows/executions/{id}/terminate``: ended, the execution's newest run known
  to be moving is ``TERMINATED`` from the 204 alone (terminating is immediate and
  unconditional);
- ``POST /workflows/executions/{id}/cancel``: requested, no event — the workflow decides
  how it ends — but the source is polled at its active interval from then on.

A hint adds what was created and moves or drops only what the snapshot already knows;
anything else is left to polling, which stays the truth.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from poller import sources, synchronous, utils
from poller.diff import DiffResult, diff
from poller.libraries import hints as library_hints
from poller.model import Event, Resource
from poller.sources import SourceSpec

if TYPE_CHECKING:
    from poller.store.sql import Store

CREATED, CHANGED, DELETED = "created", "changed", "deleted"
ENDED, REQUESTED = "ended", "requested"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A call that changes a polled resource: its method, path pattern, source and kind."""

    method: str
    pattern: re.Pattern[str]
    spec: SourceSpec
    kind: str
    status: str | None = None
    """``ENDED``: the status the call leaves the resource in."""
    requires: str | None = None
    """``CREATED``: an answer field the hint needs to name the resource as polling does."""


def _route(
    method: str,
    path: str,
    spec: SourceSpec,
    kind: str,
    *,
    status: str | None = None,
    requires: str | None = None,
) -> Route:
    """A route; ``{id}`` in ``path`` is the resource's id, any other ``{name}`` a free part."""
    pattern = re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?")
    return Route(method, pattern, spec, kind, status, requires)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/batch/jobs", sources.BATCH_JOBS, CREATED),
    _route("POST", "/batch/jobs/{id}/cancel", sources.BATCH_JOBS, CHANGED),
    _route("DELETE", "/batch/jobs/{id}", sources.BATCH_JOBS, DELETED),
    _route("POST", "/fine_tuning/jobs", sources.FINE_TUNING_JOBS, CREATED),
    _route("POST", "/fine_tuning/jobs/{id}/cancel", sources.FINE_TUNING_JOBS, CHANGED),
    _route("POST", "/files", sources.FILES, CREATED),
    _route("DELETE", "/files/{id}", sources.FILES, DELETED),
    _route("DELETE", "/models/{id}", sources.MODELS, DELETED),
    _route("POST", "/libraries", sources.LIBRARIES, CREATED),
    _route("DELETE", "/libraries/{id}", sources.LIBRARIES, DELETED),
    _route("POST", "/libraries/{library}/documents", sources.LIBRARIES, CREATED),
    _route("DELETE", "/libraries/{library}/documents/{id}", sources.LIBRARIES, DELETED),
    _route("POST", "/libraries/{library}/documents/{id}/reprocess", sources.LIBRARIES, CHANGED),
    _route(
        "POST",
        "/workflows/registrations/{registration}/execute",
        sources.WORKFLOW_RUNS,
        CREATED,
        requires="run_id",
    ),
    _route(
        "POST", "/workflows/{workflow}/execute", sources.WORKFLOW_RUNS, CREATED, requires="run_id"
    ),
    _route(
        "POST",
        "/workflows/executions/{id}/terminate",
        sources.WORKFLOW_RUNS,
        ENDED,
        status="TERMINATED",
    ),
    _route("POST", "/workflows/executions/{id}/cancel", sources.WORKFLOW_RUNS, REQUESTED),
)


def route(method: str, path: str) -> tuple[Route, str | None] | None:
    """The route a call takes (and the id in its path, decoded), or ``None``.

    ``path`` is under ``/v1`` and percent-encoded as sent: ``/models/ft%3Aa%2Fb`` names
    the model ``ft:a/b``.
    """
    bare = path.partition("?")[0]
    for candidate in ROUTES:
        if candidate.method == method.upper() and (found := candidate.pattern.fullmatch(bare)):
            rid = found.groupdict().get("id")
            return candidate, urllib.parse.unquote(rid) if rid is not None else None
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Hint:
    """What one successful call says about one resource of one workspace's source."""

    workspace: str
    spec: SourceSpec
    kind: str
    resource_id: str
    at: dt.datetime
    """When the answer was complete: the timestamp of the events it gives."""
    resource: Resource | None = None
    """The resource as the answer shows it (``None`` for a deletion, an end, a request)."""
    change: library_hints.Change | None = None
    """How a source that ``diff`` does not serve (libraries) reads and records the call."""
    status: str | None = None
    """``ENDED``: the status the call left the resource in."""

    @property
    def joins_active_set(self) -> bool:
        """A job still moving: the source is polled at its active interval from now."""
        if self.change is not None:
            return self.change.joins_active_set
        if self.kind == REQUESTED:
            return True
        return self.resource is not None and self.spec.is_active(self.resource.status)


def of_answer(
    method: str, path: str, answer: Mapping[str, Any], *, workspace: str, at: dt.datetime
) -> Hint | None:
    """The hint of a 2xx ``answer`` to ``method path``; ``None`` when it says nothing to poll."""
    found = route(method, path)
    if found is None:
        return None
    where, path_id = found
    spec = where.spec
    if spec is sources.LIBRARIES:
        return _library_hint(method, path, answer, workspace=workspace, at=at)
    if where.kind == DELETED:
        if answer.get("deleted") is not True or not path_id:
            return None
        return Hint(workspace, spec, DELETED, path_id, at)
    if where.kind in (ENDED, REQUESTED):
        # the answer is a bare 204: the path names the execution
        return (
            Hint(workspace, spec, where.kind, path_id, at, status=where.status) if path_id else None
        )
    if not spec.tracks(answer) or (where.requires and not answer.get(where.requires)):
        return None
    try:
        resource = spec.to_resource(answer)
    except ValueError:  # a dry run answers an estimate without an id
        return None
    if path_id is not None and resource.id != path_id:
        return None
    return Hint(workspace, spec, where.kind, resource.id, at, resource)


def read(
    call: synchronous.Call, workspace: str, *, polled: Collection[str] | None = None
) -> Hint | None:
    """The hint of an observed call; ``None`` for a failed call or an answer that says none.

    ``polled`` names the workspace's enabled sources: a source nobody polls takes no hint.
    """
    if not 200 <= call.status < 300 or (found := route(call.method, call.path)) is None:
        return None
    if polled is not None and found[0].spec.name not in polled:
        return None
    answer: dict[str, Any] | None
    try:
        answer = (
            {}
            if found[0].kind in (ENDED, REQUESTED)
            else synchronous.answer_of(call, keep_content=False)
        )
    except ValueError:
        answer = None  # a library's deletion or a reprocess answers 204, without a body
    at = call.finished_at
    if found[0].spec is sources.LIBRARIES:
        return _library_hint(call.method, call.path, answer, workspace=workspace, at=at)
    if answer is None:
        return None
    return of_answer(call.method, call.path, answer, workspace=workspace, at=at)


def _library_hint(
    method: str, path: str, answer: Mapping[str, Any] | None, *, workspace: str, at: dt.datetime
) -> Hint | None:
    change = library_hints.read(method, path, answer)
    if change is None:
        return None
    return Hint(
        workspace, sources.LIBRARIES, change.kind, change.resource_id, at, change.resource, change
    )


def plan(hint: Hint, before: Mapping[str, Resource]) -> DiffResult:
    """What ``hint`` changes in a snapshot holding ``before``: rows and events, as a poll would.

    A created resource is new unless the snapshot has it already; a changed job moves only
    if the snapshot knows it; a deleted one is dropped, with its event, only if it does.
    """
    if hint.change is not None:
        return hint.change.plan(before, workspace=hint.workspace, at=hint.at)
    if hint.kind == REQUESTED:
        return DiffResult()
    if hint.kind == ENDED:
        return _ended(hint, before)
    known = hint.resource_id in before
    if hint.kind == DELETED:
        gone: Sequence[str] = (hint.resource_id,) if known else ()
        seen: Sequence[Resource] = ()
    elif hint.kind == CHANGED and not known:
        return DiffResult()
    else:
        assert hint.resource is not None
        gone, seen = (), (hint.resource,)
    return diff(hint.spec, before, seen, gone=gone, workspace=hint.workspace, now=hint.at)


def _ended(hint: Hint, before: Mapping[str, Resource]) -> DiffResult:
    """The execution ``hint`` names: its current run — the newest moving run the snapshot
    knows of it — ended now. An older one still moving there continued as new meanwhile:
    polling tells how it ended."""
    assert hint.status is not None
    moving = [
        run
        for run in before.values()
        if run.data.get("execution_id") == hint.resource_id and hint.spec.is_active(run.status)
    ]
    if not moving:
        return DiffResult()
    run = max(moving, key=lambda r: (r.created or 0, str(r.data.get("start_time") or "")))
    at = utils.isoformat(hint.at)
    ended = dataclasses.replace(
        run,
        status=hint.status,
        data={**run.data, "status": hint.status, "end_time": at, "total_duration_ms": None},
    )
    return diff(hint.spec, before, [ended], workspace=hint.workspace, now=hint.at)


def record(store: Store, hint: Hint) -> list[Event]:
    """Write ``hint``'s snapshot rows and events in one transaction; the events new to it.

    A job that joins the active set also wakes, on PostgreSQL, the replica that leads its
    workspace (``Store.commit_hint``'s ``wake``), so its source is polled soon.
    """
    if hint.change is not None:
        return hint.change.record(store, hint.workspace, hint.at)
    ids = [hint.resource_id]
    if hint.kind == ENDED:  # the path names an execution: its runs are among the moving ones
        ids = store.active_ids(hint.workspace, hint.spec.name)
    return store.commit_hint(
        hint.workspace,
        hint.spec.name,
        ids,
        lambda before: plan(hint, before),
        hint.at,
        active=lambda resource: hint.spec.is_active(resource.status),
        wake=hint.joins_active_set,
    )
