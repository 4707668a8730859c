"""Workspace leases and replica heartbeats: who polls what, kept in PostgreSQL's own time.

Replicas of ``poller run`` on one PostgreSQL store share the work through two tables:

- ``replicas``: one heartbeat row per live replica, expiring ``ttl`` after its last beat;
  the number of live rows is what each replica divides the workspaces by.
- ``leases``: one row per workspace with its ``holder``, a fencing ``epoch`` raised at every
  change of hands, and ``expires_at``. An expired or released lease is taken with
  ``FOR UPDATE SKIP LOCKED``, so two replicas never take the same one.

Every time is the database's (``clock_timestamp()``), never a replica's clock. A poll's write
transaction starts (and ends) with :meth:`Leases.fence`, which locks the lease row against a
change of hands until the poll commits and refuses the write of a replica whose lease has
lapsed or moved on to a newer epoch. Every lease transaction, the fenced one included, is
ended by the server if it is left idle for a whole TTL, and by the peers
(:meth:`Leases.end_stale_transactions`) once it has waited on its replica for two thirds of
one — mid-pipeline too — so a frozen replica cannot keep the others out with a row lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import Collection, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from poller.exceptions import LeaseLost, StoreError
from poller.store import tables

_LEASES: sa.Table = tables.LeaseRow.__table__  # type: ignore[attr-defined]
_REPLICAS: sa.Table = tables.ReplicaRow.__table__  # type: ignore[attr-defined]


STALE = 2 / 3
"""Share of the TTL a peer's session may wait on its replica inside a transaction."""


def _db_now() -> Any:
    # clock_timestamp(), not now(): now() is the start of the transaction
    return sa.func.clock_timestamp()


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """One workspace's lease as ``poller status`` shows it."""

    workspace: str
    holder: str | None
    epoch: int
    expires_at: dt.datetime | None


def all_leases(engine: sa.Engine) -> list[Lease]:
    """Every workspace lease, by workspace (none on a SQLite store)."""
    query = sa.select(_LEASES).order_by(_LEASES.c.workspace)
    with engine.connect() as conn:
        return [Lease(r.workspace, r.holder, r.epoch, r.expires_at) for r in conn.execute(query)]


@dataclasses.dataclass(frozen=True, slots=True)
class Replica:
    """One live ``poller run`` replica as ``poller status`` shows it."""

    replica: str
    started_at: dt.datetime
    expires_in: float
    """Seconds until its heartbeat expires, in the database's time."""
    leads: tuple[str, ...]
    """The workspaces whose live lease it holds."""


def live_replicas(engine: sa.Engine) -> list[Replica]:
    """Every replica whose heartbeat has not expired, by id (none on a SQLite store)."""
    if engine.dialect.name != "postgresql":
        return []
    left = sa.func.extract("epoch", _REPLICAS.c.expires_at - _db_now())
    replicas = sa.select(_REPLICAS, left.label("expires_in")).where(
        _REPLICAS.c.expires_at > _db_now()
    )
    leases = sa.select(_LEASES.c.workspace, _LEASES.c.holder).where(
        _LEASES.c.expires_at > _db_now()
    )
    with engine.connect() as conn:
        led: dict[str, list[str]] = {}
        for row in conn.execute(leases.order_by(_LEASES.c.workspace)):
            led.setdefault(row.holder, []).append(row.workspace)
        return [
            Replica(r.replica, r.started_at, float(r.expires_in), tuple(led.get(r.replica, ())))
            for r in conn.execute(replicas.order_by(_REPLICAS.c.replica))
        ]


def limit_idle_transactions(engine: sa.Engine, seconds: float) -> None:
    """Have the server end any transaction of ``engine`` left idle for ``seconds``.

    A replica frozen in the middle of a transaction (SIGSTOP, a paused VM) would otherwise
    keep its row locks — on leases, on deliveries — and hold the other replicas up. Each
    connection is also named ``poller <schema>`` (unless the URL names it), so that the
    replicas of one store recognise one another's sessions, and only those
    (see :meth:`Leases.end_stale_transactions`).
    """
    idle_ms = max(1, round(seconds * 1000))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {idle_ms}")
            cursor.execute(
                "SELECT set_config('application_name', 'poller ' || current_schema(), false) "
                "WHERE current_setting('application_name') = ''"
            )
        dbapi_connection.commit()

    sa.event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections opened before (the schema check) are opened again


class Leases:
    """The lease and heartbeat statements of one replica, over a PostgreSQL engine."""

    def __init__(self, engine: sa.Engine, *, replica: str, ttl: float) -> None:
        if engine.dialect.name != "postgresql":
            raise StoreError("leases need a PostgreSQL store; a SQLite store has one daemon")
        self.engine = engine
        self.replica = replica
        self.ttl = ttl

    def _limit_idle(self, conn: sa.Connection) -> None:
        # a replica frozen inside a transaction (SIGSTOP, a paused VM) must not keep its row
        # locks: the server ends a transaction left idle for a whole TTL
        idle_ms = str(max(1, round(self.ttl * 1000)))
        conn.execute(
            sa.select(sa.func.set_config("idle_in_transaction_session_timeout", idle_ms, True))
        )

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        with self.engine.begin() as conn:
            self._limit_idle(conn)
            yield conn

    def _expiry(self) -> Any:
        return _db_now() + sa.literal(dt.timedelta(seconds=self.ttl), sa.Interval())

    def heartbeat(self) -> int:
        """Beat this replica's row, forget expired replicas; return how many are live."""
        stmt = postgresql.insert(_REPLICAS).values(
            replica=self.replica, started_at=_db_now(), expires_at=self._expiry()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["replica"], set_={"expires_at": stmt.excluded.expires_at}
        )
        with self._transaction() as conn:
            conn.execute(stmt)
            conn.execute(_REPLICAS.delete().where(_REPLICAS.c.expires_at <= _db_now()))
            live = conn.scalar(sa.select(sa.func.count()).where(_REPLICAS.c.expires_at > _db_now()))
        return int(live or 0)

    def end_stale_transactions(self) -> int:
        """End peers' transactions that have waited on their replica too long; return how many.

        A session of the store (named ``poller <schema>``) inside a transaction and waiting
        on its client — idle in the transaction, or active in the middle of a pipeline of
        statements (psycopg's ``executemany``), where no server timeout is armed — for more
        than ``STALE`` of the TTL belongs to a replica that is frozen or stalled: its leases
        are no longer trusted, so its write must not keep the lease row locked until it
        wakes. Ending it rolls the write back; the ended backends are waited for (up to a
        third of the TTL) so that the locks are gone when this turn takes leases.
        """
        stale = sa.text(
            "SELECT pid, pg_terminate_backend(pid) AS ended FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND application_name = current_setting('application_name') "
            "AND current_setting('application_name') <> '' "
            "AND xact_start IS NOT NULL "
            "AND (state LIKE 'idle in transaction%' "
            "OR (state = 'active' AND wait_event_type = 'Client')) "
            "AND state_change < clock_timestamp() - :after"
        ).bindparams(
            sa.bindparam("after", dt.timedelta(seconds=self.ttl * STALE), type_=sa.Interval())
        )
        alive = sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:pids)")
        with self.engine.connect() as conn:
            ended = [row.pid for row in conn.execute(stale) if row.ended]
            conn.rollback()
            deadline = time.monotonic() + self.ttl / 3
            while ended and conn.scalar(alive, {"pids": ended}) and time.monotonic() < deadline:
                conn.rollback()  # a fresh snapshot of pg_stat_activity
                time.sleep(0.01)
            conn.rollback()
        return len(ended)

    def renew(self, held: Mapping[str, int]) -> dict[str, int]:
        """Extend the leases of ``held`` (workspace → epoch) still ours; return those."""
        if not held:
            return {}
        stmt = (
            _LEASES.update()
            .where(
                _LEASES.c.holder == self.replica,
                sa.tuple_(_LEASES.c.workspace, _LEASES.c.epoch).in_(list(held.items())),
                _LEASES.c.expires_at > _db_now(),
            )
            .values(expires_at=self._expiry())
            .returning(_LEASES.c.workspace, _LEASES.c.epoch)
        )
        with self._transaction() as conn:
            return {row.workspace: row.epoch for row in conn.execute(stmt)}

    def acquire(self, workspaces: Collection[str], limit: int) -> dict[str, int]:
        """Take up to ``limit`` of ``workspaces`` whose lease is free or expired.

        Each taken lease gets the next epoch; return workspace → epoch.
        """
        if limit <= 0 or not workspaces:
            return {}
        names = sorted(workspaces)
        ensure = postgresql.insert(_LEASES).values([{"workspace": w} for w in names])
        free = (
            sa.select(_LEASES.c.workspace)
            .where(
                _LEASES.c.workspace.in_(names),
                sa.or_(_LEASES.c.expires_at.is_(None), _LEASES.c.expires_at <= _db_now()),
            )
            .order_by(_LEASES.c.workspace)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        take = (
            _LEASES.update()
            .where(_LEASES.c.workspace.in_(free))
            .values(holder=self.replica, epoch=_LEASES.c.epoch + 1, expires_at=self._expiry())
            .returning(_LEASES.c.workspace, _LEASES.c.epoch)
        )
        with self._transaction() as conn:
            conn.execute(ensure.on_conflict_do_nothing(index_elements=["workspace"]))
        with self._transaction() as conn:
            return {row.workspace: row.epoch for row in conn.execute(take)}

    def release(self, held: Mapping[str, int]) -> None:
        """Give up the leases of ``held`` (workspace → epoch) at once: others take them now."""
        if not held:
            return
        stmt = (
            _LEASES.update()
            .where(
                _LEASES.c.holder == self.replica,
                sa.tuple_(_LEASES.c.workspace, _LEASES.c.epoch).in_(list(held.items())),
            )
            .values(holder=None, expires_at=_db_now())
        )
        with self._transaction() as conn:
            conn.execute(stmt)

    def leave(self, held: Mapping[str, int]) -> None:
        """Release ``held`` and remove this replica's heartbeat (a clean shutdown)."""
        self.release(held)
        with self._transaction() as conn:
            conn.execute(_REPLICAS.delete().where(_REPLICAS.c.replica == self.replica))

    def fence(self, conn: sa.Connection, workspace: str, epoch: int) -> None:
        """Is the lease still ours, at ``epoch`` (the one the poll began under), and live?

        A poll's write transaction asks first, and again just before it commits. The row
        is locked ``FOR KEY SHARE`` until the transaction ends: no other replica can
        take the lease meanwhile (taking it needs ``FOR UPDATE``), while this replica's own
        renewal (an update of non-key columns) is not held up. A transaction left idle for a
        whole TTL (a replica frozen mid-poll) is ended by the server, so its lock cannot
        keep the others out. Raises ``LeaseLost`` when the write must not happen.
        """
        self._limit_idle(conn)
        row = conn.execute(
            sa.select(
                _LEASES.c.holder,
                _LEASES.c.epoch,
                (_LEASES.c.expires_at > _db_now()).label("live"),
            )
            .where(_LEASES.c.workspace == workspace)
            .with_for_update(read=True, key_share=True)
        ).first()
        if row is not None and row.holder == self.replica and row.epoch != epoch:
            raise LeaseLost(
                f"workspace {workspace}: the lease changed hands since this poll began "
                f"(epoch {epoch}, now {row.epoch}); nothing is written"
            )
        if row is None or row.holder != self.replica or row.epoch != epoch:
            holder = row.holder if row is not None else None
            raise LeaseLost(
                f"workspace {workspace}: the lease (epoch {epoch}) passed to "
                f"{holder or 'nobody'}; this replica's poll is not written"
            )
        if not row.live:
            raise LeaseLost(
                f"workspace {workspace}: the lease (epoch {epoch}) expired before the poll "
                "wrote; nothing is written"
            )
