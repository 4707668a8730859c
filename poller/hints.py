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
- ``DELETE /files/{id}``, ``DELETE /models/{id}``: deleted, when the answer says
  ``deleted: true``;
- libraries and their documents: created, deleted, uploaded, reprocessed, read by
  ``poller.libraries.hints`` (a hint's ``change``).

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

from poller import sources, synchronous
from poller.diff import DiffResult, diff
from poller.libraries import hints as library_hints
from poller.model import Event, Resource
from poller.sources import SourceSpec

if TYPE_CHECKING:
    from poller.store.sql import Store

CREATED, CHANGED, DELETED = "created", "changed", "deleted"


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A call that changes a polled resource: its method, path pattern, source and kind."""

    method: str
    pattern: re.Pattern[str]
    spec: SourceSpec
    kind: str


def _route(method: str, path: str, spec: SourceSpec, kind: str) -> Route:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path)
    return Route(method, re.compile(pattern + "/?"), spec, kind)


ROUTES: tuple[Route, ...] = (
    _route("POST", "/batch/jobs", sources.BATCH_JOBS, CREATED),
    _route("POST", "/batch/jobs/{id}/cancel", sources.BATCH_JOBS, CHANGED),
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
    """The resource as the answer shows it (``None`` for a deletion)."""
    change: library_hints.Change | None = None
    """How a source that ``diff`` does not serve (libraries) reads and records the call."""

    @property
    def joins_active_set(self) -> bool:
        """A job still moving: the source is polled at its active interval from now."""
        if self.change is not None:
            return self.change.joins_active_set
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
    if not spec.tracks(answer):
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
        answer = synchronous.answer_of(call, keep_content=False)
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


def record(store: Store, hint: Hint) -> list[Event]:
    """Write ``hint``'s snapshot rows and events in one transaction; the events new to it."""
    if hint.change is not None:
        return hint.change.record(store, hint.workspace, hint.at)
    return store.commit_hint(
        hint.workspace,
        hint.spec.name,
        [hint.resource_id],
        lambda before: plan(hint, before),
        hint.at,
        active=lambda resource: hint.spec.is_active(resource.status),
    )
