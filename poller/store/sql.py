"""The snapshot side of the store: what each source holds, and the one transaction per poll.

Every write a poll makes — snapshot rows, the source's state, its events and their
deliveries — happens in ``Store.commit_poll``'s single transaction, so a crash at any
instant either keeps all of it or none of it: nothing lost, nothing announced twice.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from poller.diff import DiffResult
from poller.model import Event, Resource, SourceState
from poller.store import outbox, tables
from poller.store.dialect import chunks, upsert

Router = Callable[[Event], Sequence[str]]
"""Names of the sinks an event goes to."""

_RESOURCES: sa.Table = tables.ResourceRow.__table__  # type: ignore[attr-defined]
_STATES: sa.Table = tables.SourceStateRow.__table__  # type: ignore[attr-defined]
_META: sa.Table = tables.MetaRow.__table__  # type: ignore[attr-defined]


@dataclasses.dataclass(frozen=True, slots=True)
class PollCommit:
    """Everything one successful poll of one source writes."""

    workspace: str
    source: str
    result: DiffResult
    now: dt.datetime
    cursor: int | None = None
    reconciled: bool = False
    held_since: dt.datetime | None = None
    held_count: int = 0


def _resource(row: sa.Row[Any]) -> Resource:
    return Resource(id=row.resource_id, status=row.status, created=row.created, data=row.data)


def _state(row: sa.Row[Any] | None, workspace: str, source: str) -> SourceState:
    if row is None:
        return SourceState(workspace=workspace, source=source)
    return SourceState(
        workspace=workspace,
        source=source,
        baselined=row.baselined,
        cursor=row.cursor,
        last_poll_at=row.last_poll_at,
        last_success_at=row.last_success_at,
        last_reconcile_at=row.last_reconcile_at,
        last_error=row.last_error,
        error_streak=row.error_streak,
        held_since=row.held_since,
        held_count=row.held_count,
    )


class Store:
    """Snapshot reads and the poll transaction, over one SQLAlchemy engine."""

    def __init__(self, engine: sa.Engine, route: Router) -> None:
        self.engine = engine
        self.route = route

    # -- reads -----------------------------------------------------------------------

    def load_resources(
        self, workspace: str, source: str, ids: Collection[str] | None = None
    ) -> dict[str, Resource]:
        """The remembered items of a source: all of them, or those among ``ids``."""
        base = sa.select(_RESOURCES).where(
            _RESOURCES.c.workspace == workspace, _RESOURCES.c.source == source
        )
        found: dict[str, Resource] = {}
        with self.engine.connect() as conn:
            if ids is None:
                for row in conn.execute(base):
                    found[row.resource_id] = _resource(row)
                return found
            for part in chunks(sorted(ids)):
                for row in conn.execute(base.where(_RESOURCES.c.resource_id.in_(part))):
                    found[row.resource_id] = _resource(row)
        return found

    def active_ids(self, workspace: str, source: str) -> list[str]:
        """Ids of the jobs of a source that have not reached a terminal status."""
        query = sa.select(_RESOURCES.c.resource_id).where(
            _RESOURCES.c.workspace == workspace,
            _RESOURCES.c.source == source,
            _RESOURCES.c.active.is_(True),
        )
        with self.engine.connect() as conn:
            return list(conn.scalars(query))

    def counts(self, workspace: str, source: str) -> tuple[int, int]:
        """(tracked items, active jobs) of a source."""
        query = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((_RESOURCES.c.active.is_(True), 1), else_=0)), 0),
        ).where(_RESOURCES.c.workspace == workspace, _RESOURCES.c.source == source)
        with self.engine.connect() as conn:
            total, active = conn.execute(query).one()
        return int(total), int(active)

    def source_state(self, workspace: str, source: str) -> SourceState:
        query = sa.select(_STATES).where(
            _STATES.c.workspace == workspace, _STATES.c.source == source
        )
        with self.engine.connect() as conn:
            return _state(conn.execute(query).first(), workspace, source)

    def source_states(self) -> list[SourceState]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_STATES).order_by(_STATES.c.workspace, _STATES.c.source))
            return [_state(r, r.workspace, r.source) for r in rows]

    # -- writes ----------------------------------------------------------------------

    def commit_poll(self, commit: PollCommit, *, active: Callable[[Resource], bool]) -> list[Event]:
        """Write one poll in one transaction; return the events that were new to the outbox."""
        now = commit.now
        with self.engine.begin() as conn:
            self._write_snapshot(conn, commit, active)
            recorded = outbox.add_events(conn, commit.result.events, self.route, now)
            state: dict[str, Any] = {
                "workspace": commit.workspace,
                "source": commit.source,
                "baselined": True,
                "last_poll_at": now,
                "last_success_at": now,
                "last_error": None,
                "error_streak": 0,
                "held_since": commit.held_since,
                "held_count": commit.held_count,
            }
            if commit.cursor is not None:
                state["cursor"] = commit.cursor
            if commit.reconciled:
                state["last_reconcile_at"] = now
            upsert(conn, _STATES, [state], ("workspace", "source"))
        return recorded

    def _write_snapshot(
        self, conn: sa.Connection, commit: PollCommit, active: Callable[[Resource], bool]
    ) -> None:
        rows = [
            {
                "workspace": commit.workspace,
                "source": commit.source,
                "resource_id": r.id,
                "status": r.status,
                "created": r.created,
                "active": active(r),
                "data": dict(r.data),
                "first_seen_at": commit.now,
                "updated_at": commit.now,
            }
            for r in commit.result.upserts
        ]
        upsert(
            conn,
            _RESOURCES,
            rows,
            ("workspace", "source", "resource_id"),
            update=("status", "created", "active", "data", "updated_at"),
        )
        for part in chunks(list(commit.result.removals)):
            conn.execute(
                _RESOURCES.delete().where(
                    _RESOURCES.c.workspace == commit.workspace,
                    _RESOURCES.c.source == commit.source,
                    _RESOURCES.c.resource_id.in_(part),
                )
            )

    def record_poll_error(
        self, workspace: str, source: str, error: str, now: dt.datetime
    ) -> SourceState:
        """Count one failed poll; the snapshot and the outbox are left untouched."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(_STATES.c.error_streak).where(
                    _STATES.c.workspace == workspace, _STATES.c.source == source
                )
            ).first()
            streak = (row.error_streak if row else 0) + 1
            upsert(
                conn,
                _STATES,
                [
                    {
                        "workspace": workspace,
                        "source": source,
                        "last_poll_at": now,
                        "last_error": error[:1000],
                        "error_streak": streak,
                    }
                ],
                ("workspace", "source"),
            )
        return self.source_state(workspace, source)

    def touch(self, now: dt.datetime) -> None:
        """Write the ``heartbeat`` row of ``meta``: proof that the store takes writes."""
        with self.engine.begin() as conn:
            upsert(conn, _META, [{"key": "heartbeat", "value": now.isoformat()}], ("key",))

    def enqueue(self, events: Iterable[Event], now: dt.datetime) -> list[Event]:
        """Record events that no poll produced (the proxy, actions): same outbox, same ids rule."""
        with self.engine.begin() as conn:
            return outbox.add_events(conn, list(events), self.route, now)
