"""The pure core: what changed between the remembered snapshot and what the API shows now.

``diff`` is a function of plain data — no session, no client, no clock — so every rule is
tested with tables (``tests/unit/test_diff.py``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Iterable, Mapping

from poller import catalog
from poller.model import Event, Resource
from poller.sources import SourceSpec


@dataclasses.dataclass(frozen=True, slots=True)
class DiffResult:
    """What one poll changes: snapshot rows to write and drop, and the events they cause."""

    upserts: tuple[Resource, ...] = ()
    removals: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.upserts or self.removals or self.events)


def event_for(
    spec: SourceSpec,
    event_type: str,
    resource: Resource,
    *,
    workspace: str,
    now: dt.datetime,
) -> Event:
    """The event ``event_type`` about ``resource``, with its stable id.

    The id depends only on the workspace, the type, the resource id and the resource's
    creation time (which tells a re-created id apart), never on when it was detected.
    """
    return Event(
        id=catalog.event_id(workspace, event_type, resource.id, resource.created),
        type=event_type,
        workspace=workspace,
        resource_id=resource.id,
        timestamp=now,
        data=catalog.payload(event_type, resource.data),
    )


def _order(resource: Resource) -> tuple[int, str]:
    return (resource.created if resource.created is not None else 0, resource.id)


def diff(
    spec: SourceSpec,
    before: Mapping[str, Resource],
    seen: Iterable[Resource],
    *,
    gone: Collection[str] = (),
    announce: bool = True,
    workspace: str,
    now: dt.datetime,
    milestones: Collection[str] = (),
) -> DiffResult:
    """Compare ``seen`` (fresh from the API) and ``gone`` (confirmed deleted) with ``before``.

    - ``before`` holds the remembered state of every id the caller looked at;
    - an id in ``seen`` but not in ``before`` is new: ``<resource>.created`` (or
      ``file.uploaded``), followed by its outcome when it is already terminal;
    - a remembered job whose status enters a terminal one gets its outcome event, once;
    - a job seen in a milestone status (batch jobs: ``RUNNING``) after an earlier one, or
      new in it, gets that opt-in event when its type is among ``milestones``;
    - an id in ``gone`` is dropped, with ``<resource>.deleted`` where the source has one;
    - ``announce=False`` (a silent baseline) records everything and announces nothing.

    Events come in the order things happened: older resources first.
    """
    upserts: list[Resource] = []
    events: list[Event] = []

    def emit(event_type: str, resource: Resource) -> None:
        if announce:
            events.append(event_for(spec, event_type, resource, workspace=workspace, now=now))

    observed = sorted(seen, key=_order)
    for resource in observed:
        previous = before.get(resource.id)
        if previous is None:
            upserts.append(resource)
            emit(f"{spec.resource}.{spec.created_action}", resource)
            milestone = spec.milestone_type(resource.status)
            if milestone is not None and milestone in milestones:
                emit(milestone, resource)
            if outcome := spec.outcome_type(resource.status):
                emit(outcome, resource)
            continue
        if previous == resource:
            continue
        upserts.append(resource)
        milestone = spec.milestone_type(resource.status)
        if (
            milestone is not None
            and milestone in milestones
            and previous.status != resource.status
            and spec.outcome_type(previous.status) is None
        ):
            emit(milestone, resource)
        outcome = spec.outcome_type(resource.status)
        if outcome and spec.outcome_type(previous.status) is None:
            emit(outcome, resource)

    seen_ids = {r.id for r in observed}
    removals: list[str] = []
    for rid in sorted(gone):
        previous = before.get(rid)
        if previous is None or rid in seen_ids:
            continue
        removals.append(rid)
        if spec.deleted_action:
            emit(f"{spec.resource}.{spec.deleted_action}", previous)

    return DiffResult(tuple(upserts), tuple(removals), tuple(events))
