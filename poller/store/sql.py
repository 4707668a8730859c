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
from poller.store import intake, tables
from poller.store.dialect import chunks, upsert

Router = Callable[[Event], Sequence[str]]
"""Names of the sinks an event goes to."""
Fence = Callable[[sa.Connection], None]
"""A poll's lease check, first and last in its write transaction; raises ``LeaseLost``
when the poll must not write."""

WAKE_CHANNEL = "poller_wake"
"""The PostgreSQL NOTIFY channel a hint wakes its source's polling on, whichever replica
leads it (payload: JSON with ``schema``, ``workspace`` and ``source``)."""

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

    def ids(self, workspace: str, source: str) -> set[str]:
        """Ids of every remembered item of a source."""
        query = sa.select(_RESOURCES.c.resource_id).where(
            _RESOURCES.c.workspace == workspace, _RESOURCES.c.source == source
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    def ids_under(self, workspace: str, source: str, prefix: str) -> set[str]:
        """Ids of a source's items that start with ``prefix`` (a library's documents: ``lib/``)."""
        query = sa.select(_RESOURCES.c.resource_id).where(
            _RESOURCES.c.workspace == workspace,
            _RESOURCES.c.source == source,
            _RESOURCES.c.resource_id.startswith(prefix, autoescape=True),
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

    def top_ids(self, workspace: str, source: str, separator: str = "/") -> set[str]:
        """Ids of a source's items that hold no ``separator``: the outer items of a source
        that keeps inner ones under ``outer/inner`` (libraries and their documents)."""
        query = sa.select(_RESOURCES.c.resource_id).where(
            _RESOURCES.c.workspace == workspace,
            _RESOURCES.c.source == source,
            ~_RESOURCES.c.resource_id.contains(separator, autoescape=True),
        )
        with self.engine.connect() as conn:
            return set(conn.scalars(query))

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

    def commit_poll(
        self,
        commit: PollCommit,
        *,
        active: Callable[[Resource], bool],
        staged: Iterable[Sequence[Resource]] = (),
        fence: Fence | None = None,
    ) -> list[Event]:
        """Write one poll in one transaction; return the events that were new to the outbox.

        ``staged``, chunks of snapshot rows a listing staged while it paged, is written
        first, inside the same transaction. ``fence``, when given, is the transaction's
        first call and its last before the commit (a replica's lease check).
        """
        with self.writer(
            commit.workspace, commit.source, commit.now, active=active, fence=fence
        ) as writer:
            for chunk in staged:
                writer.write(chunk)
            writer.write(commit.result.upserts, commit.result.removals)
            return writer.commit(
                commit.result.events,
                cursor=commit.cursor,
                reconciled=commit.reconciled,
                held_since=commit.held_since,
                held_count=commit.held_count,
            )

    def commit_hint(
        self,
        workspace: str,
        source: str,
        ids: Collection[str],
        plan: Callable[[dict[str, Resource]], DiffResult],
        now: dt.datetime,
        *,
        active: Callable[[Resource], bool],
        wake: bool = False,
    ) -> list[Event]:
        """Write what ``plan`` makes of the rows of ``ids``, and its events, in one transaction.

        For what a call that passed through poller showed (``poller.hints``): the snapshot
        rows and the events land together, so the next poll announces none of them again.
        The source's state (baseline, cursor, last poll) is left alone: this is no poll.
        With ``wake`` on PostgreSQL the transaction also notifies ``WAKE_CHANNEL``, so the
        replica leading the workspace, whichever it is, polls the source soon.
        Returns the events that were new to the outbox.
        """
        with self.writer(workspace, source, now, active=active) as writer:
            result = plan(writer.read(ids))
            writer.write(result.upserts, result.removals)
            if wake:
                writer.wake()
            return writer.finish(result.events)

    def writer(
        self,
        workspace: str,
        source: str,
        now: dt.datetime,
        *,
        active: Callable[[Resource], bool],
        fence: Fence | None = None,
    ) -> PollWriter:
        """The one transaction of a poll; it begins at its first write and ends at ``commit``.

        ``fence``, when given, is the transaction's first call and its last before the
        commit (a replica's lease check).
        """
        return PollWriter(self, workspace, source, now, active, fence)

    def record_poll_error(
        self,
        workspace: str,
        source: str,
        error: str,
        now: dt.datetime,
        *,
        fence: Fence | None = None,
    ) -> SourceState:
        """Count one failed poll; the snapshot and the outbox are left untouched.

        ``fence``, when given, is the poll's lease check: a replica that lost the lease
        records nothing.
        """
        with self.engine.begin() as conn:
            if fence is not None:
                fence(conn)
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
        """Record events that no poll produced (the proxy, actions): same outbox, same ids rule.

        ``now`` is when the producer saw them; their deliveries are dated by the database.
        """
        with self.engine.begin() as conn:
            return intake.add_events(conn, list(events), self.route)


class PollWriter:
    """One poll's transaction, opened at its first write and committed by ``commit``.

    Rows may be written in several calls (a large listing's, chunk by chunk); the
    transaction stays open until ``commit`` writes the events and the source's state, so
    everything the poll changes becomes visible at once — or, if anything fails first, not
    at all. The poll has fetched everything before it begins: no API call waits inside.
    """

    def __init__(
        self,
        store: Store,
        workspace: str,
        source: str,
        now: dt.datetime,
        active: Callable[[Resource], bool],
        fence: Fence | None = None,
    ) -> None:
        self.store = store
        self.workspace = workspace
        self.source = source
        self.now = now
        self.active = active
        self.fence = fence
        self._conn: sa.Connection | None = None
        self._txn: sa.RootTransaction | None = None

    def __enter__(self) -> PollWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._txn is not None and self._txn.is_active:
            self._txn.rollback()
        if self._conn is not None:
            self._conn.close()
        self._conn = self._txn = None

    def _connection(self) -> sa.Connection:
        if self._conn is None:
            self._conn = self.store.engine.connect()
            self._txn = self._conn.begin()
            if self.fence is not None:
                self.fence(self._conn)
        return self._conn

    def read(self, ids: Collection[str]) -> dict[str, Resource]:
        """The remembered rows of ``ids``, read on this transaction's connection."""
        conn = self._connection()
        found: dict[str, Resource] = {}
        for part in chunks(sorted(ids)):
            query = sa.select(_RESOURCES).where(
                _RESOURCES.c.workspace == self.workspace,
                _RESOURCES.c.source == self.source,
                _RESOURCES.c.resource_id.in_(part),
            )
            for row in conn.execute(query):
                found[row.resource_id] = _resource(row)
        return found

    def write(self, upserts: Sequence[Resource] = (), removals: Sequence[str] = ()) -> None:
        """Write snapshot rows (uncommitted until ``commit``)."""
        if not upserts and not removals:
            return
        conn = self._connection()
        rows = [
            {
                "workspace": self.workspace,
                "source": self.source,
                "resource_id": r.id,
                "status": r.status,
                "created": r.created,
                "active": self.active(r),
                "data": dict(r.data),
                "first_seen_at": self.now,
                "updated_at": self.now,
            }
            for r in upserts
        ]
        upsert(
            conn,
            _RESOURCES,
            rows,
            ("workspace", "source", "resource_id"),
            update=("status", "created", "active", "data", "updated_at"),
        )
        for part in chunks(list(removals)):
            conn.execute(
                _RESOURCES.delete().where(
                    _RESOURCES.c.workspace == self.workspace,
                    _RESOURCES.c.source == self.source,
                    _RESOURCES.c.resource_id.in_(part),
                )
            )

    def wake(self) -> None:
        """On PostgreSQL, notify ``WAKE_CHANNEL`` for this source at commit (else nothing:
        a SQLite store has one daemon, woken in process)."""
        conn = self._connection()
        if conn.dialect.name != "postgresql":
            return
        payload = sa.func.json_build_object(
            "schema", sa.func.current_schema(), "workspace", self.workspace, "source", self.source
        )
        conn.execute(sa.select(sa.func.pg_notify(WAKE_CHANNEL, sa.cast(payload, sa.Text))))

    def finish(self, events: Sequence[Event]) -> list[Event]:
        """Record the events and commit everything, leaving the source's state as it is."""
        recorded = intake.add_events(self._connection(), events, self.store.route)
        self._commit()
        return recorded

    def commit(
        self,
        events: Sequence[Event],
        *,
        cursor: int | None = None,
        reconciled: bool = False,
        held_since: dt.datetime | None = None,
        held_count: int = 0,
    ) -> list[Event]:
        """Record the events and the source's new state, and commit everything."""
        conn = self._connection()
        recorded = intake.add_events(conn, events, self.store.route)
        state: dict[str, Any] = {
            "workspace": self.workspace,
            "source": self.source,
            "baselined": True,
            "last_poll_at": self.now,
            "last_success_at": self.now,
            "last_error": None,
            "error_streak": 0,
            "held_since": held_since,
            "held_count": held_count,
        }
        if cursor is not None:
            state["cursor"] = cursor
        if reconciled:
            state["last_reconcile_at"] = self.now
        upsert(conn, _STATES, [state], ("workspace", "source"))
        self._commit()
        return recorded

    def _commit(self) -> None:
        # the lease is checked again last: a replica that stalled while this transaction
        # was open, or whose leadership loop gave the lease up meanwhile, commits nothing
        assert self._conn is not None and self._txn is not None
        if self.fence is not None:
            self.fence(self._conn)
        self._txn.commit()
