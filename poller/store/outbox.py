"""The outbox as the dispatcher drains it: claim due deliveries, record attempts, give back.

Any number of processes share one outbox. A dispatcher *claims* the deliveries it sends:
a claim token and a deadline on each row, taken with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (on SQLite the file's single writer makes the conditional UPDATE enough). Only
the first pending delivery of a resource can be claimed, so a resource's events go in
order whoever sends them. Every write of an attempt's result is conditional on the claim
that took it (compare-and-set on the token): a holder whose claim lapsed, or was cleared by
an operator's replay, writes nothing and moves nothing backwards. A holder that dies
leaves its claims to lapse at their deadline, when any other process takes them again.

Every time here is the database's (``dbtime``): a claim's deadline, when a delivery is due,
when it was created. Callers pass durations — a claim's timeout, a retry's delay, a maximum
age — never a time of their own clock.

Events enter through ``intake``; operators read and replay through ``ledger``; a sink's
circuit and enablement live in ``sinkstate``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa

from poller.model import Delivery
from poller.store import dbtime
from poller.store.rows import ATTEMPTS, DEAD, DELIVERIES, EVENTS, PENDING, event_of


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and where it leaves its delivery."""

    delivery_id: int
    ok: bool
    outcome: str
    """``delivered``, ``transient``, ``rejected`` or ``gone``."""
    status: str
    """The delivery's status afterwards: pending, delivered or dead."""
    retry_in: float = 0.0
    """Seconds from the write until it is due again (pending only)."""
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
    claim: str | None = None
    """The claim the attempt was made under; None for a delivery nobody claimed."""


def _delivery_query() -> sa.Select[Any]:
    d, e = DELIVERIES, EVENTS
    return sa.select(
        d.c.id.label("delivery_id"),
        d.c.sink,
        d.c.attempts,
        d.c.created_at,
        d.c.next_attempt_at,
        e.c.id,
        e.c.type,
        e.c.workspace,
        e.c.resource_id,
        e.c.timestamp,
        e.c.data,
    ).join(e, e.c.seq == d.c.event_seq)


def _delivery(
    row: Any, claim: str | None = None, claimed_at: dt.datetime | None = None
) -> Delivery:
    return Delivery(
        id=row.delivery_id,
        sink=row.sink,
        event=event_of(row),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        claim=claim,
        claimed_at=claimed_at,
    )


def _unclaimed(now: sa.ColumnElement[dt.datetime]) -> sa.ColumnElement[bool]:
    """Nobody holds it: never claimed, claim written back, or the holder's deadline passed."""
    d = DELIVERIES
    return sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)


def _owned(claims: Sequence[tuple[int, str | None]]) -> sa.ColumnElement[bool]:
    """Rows still held under the given (delivery id, claim) pairs; None: held by nobody."""
    d = DELIVERIES
    held = [(i, c) for i, c in claims if c is not None]
    free = [i for i, c in claims if c is None]
    return sa.or_(
        sa.tuple_(d.c.id, d.c.claim_token).in_(held) if held else sa.false(),
        sa.and_(d.c.id.in_(free), d.c.claim_token.is_(None)) if free else sa.false(),
    )


class Outbox:
    """Claims, attempts and give-backs over the deliveries of every sink."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def _heads(
        self, sink: str, exclude: Collection[int], query: sa.Select[Any] | None = None
    ) -> sa.Select[Any]:
        """Pending deliveries of ``sink`` with no earlier pending delivery of the same resource.

        ``query`` is what to select them with (default: whole deliveries with their events).
        """
        d = DELIVERIES
        earlier = d.alias("earlier")
        query = (_delivery_query() if query is None else query).where(
            d.c.sink == sink,
            d.c.status == PENDING,
            ~sa.exists().where(
                earlier.c.sink == d.c.sink,
                earlier.c.order_key == d.c.order_key,
                earlier.c.status == PENDING,
                earlier.c.event_seq < d.c.event_seq,
            ),
        )
        if exclude:
            query = query.where(d.c.id.not_in(list(exclude)))
        return query

    def due(self, sink: str, limit: int, exclude: Collection[int] = ()) -> list[Delivery]:
        """Deliveries of ``sink`` that may go now, longest due first, a resource's in order."""
        d = DELIVERIES
        with self.engine.connect() as conn:
            now = dbtime.now(conn)
            query = (
                self._heads(sink, exclude)
                .where(d.c.next_attempt_at <= now, _unclaimed(now))
                .order_by(d.c.next_attempt_at, d.c.event_seq)
                .limit(limit)
            )
            return [_delivery(r) for r in conn.execute(query)]

    def claim(
        self, sink: str, limit: int, ttl: float, exclude: Collection[int] = ()
    ) -> list[Delivery]:
        """Claim up to ``limit`` deliveries of ``sink`` that may go now, for ``ttl`` seconds.

        What ``due`` offers, less what another process holds; each returned delivery carries
        the claim its writes must present, and the database's time it was taken at. Rows
        another transaction is claiming are skipped, not waited for.
        """
        d = DELIVERIES

        def ids(now: sa.ColumnElement[dt.datetime]) -> sa.Select[Any]:
            return (
                self._heads(sink, exclude, sa.select(d.c.id))
                .where(d.c.next_attempt_at <= now, _unclaimed(now))
                .order_by(d.c.next_attempt_at, d.c.event_seq)
                .limit(limit)
            )

        return self._claim(ids, ttl, order=(d.c.next_attempt_at, d.c.event_seq))

    def claim_probe(self, sink: str, ttl: float) -> Delivery | None:
        """Claim the delivery a failing sink is probed with (see ``probe_candidate``)."""
        d = DELIVERIES

        def ids(now: sa.ColumnElement[dt.datetime]) -> sa.Select[Any]:
            return (
                self._heads(sink, (), sa.select(d.c.id))
                .where(_unclaimed(now))
                .order_by(sa.case((d.c.next_attempt_at <= now, 0), else_=1), d.c.event_seq)
                .limit(1)
            )

        claimed = self._claim(ids, ttl, order=(d.c.event_seq,))
        return claimed[0] if claimed else None

    def _claim(
        self,
        ids: Callable[[sa.ColumnElement[dt.datetime]], sa.Select[Any]],
        ttl: float,
        order: Sequence[sa.ColumnElement[Any]],
    ) -> list[Delivery]:
        d = DELIVERIES
        token = uuid.uuid4().hex
        with self.engine.begin() as conn:
            locked = ids(dbtime.now(conn)).with_for_update(of=d, skip_locked=True)
            claim = (
                d.update()
                .where(d.c.id.in_(locked.scalar_subquery()))
                .values(claim_token=token, claimed_until=dbtime.after(conn, ttl))
                .returning(d.c.id, d.c.claimed_until)
            )
            claimed = conn.execute(claim).all()
            if not claimed:
                return []
            at = claimed[0].claimed_until - dt.timedelta(seconds=ttl)
            rows = conn.execute(
                _delivery_query().where(d.c.id.in_([c.id for c in claimed])).order_by(*order)
            )
            return [_delivery(r, token, at) for r in rows]

    def renew(self, claims: Collection[str], ttl: float) -> list[int]:
        """Give the rows still held under ``claims`` ``ttl`` seconds more; return their ids.

        A row of these claims that is not returned has been taken by another process (its
        claim had lapsed) or cleared by a replay: it is no longer this process's to send.
        """
        if not claims:
            return []
        d = DELIVERIES
        with self.engine.begin() as conn:
            renewed = conn.scalars(
                d.update()
                .where(d.c.claim_token.in_(list(claims)))
                .values(claimed_until=dbtime.after(conn, ttl))
                .returning(d.c.id)
            )
            return list(renewed)

    def unclaim(self, claims: Sequence[tuple[int, str]]) -> None:
        """Give back deliveries claimed and not attempted: others may take them at once."""
        if not claims:
            return
        d = DELIVERIES
        with self.engine.begin() as conn:
            conn.execute(
                d.update().where(_owned(claims)).values(claim_token=None, claimed_until=None)
            )

    def probe_candidate(self, sink: str) -> Delivery | None:
        """The delivery a failing sink is probed with: its oldest due head, else its oldest head."""
        d = DELIVERIES
        with self.engine.connect() as conn:
            query = (
                self._heads(sink, ())
                .order_by(
                    sa.case((d.c.next_attempt_at <= dbtime.now(conn), 0), else_=1), d.c.event_seq
                )
                .limit(1)
            )
            row = conn.execute(query).first()
        return _delivery(row) if row else None

    def next_due_in(self, sink: str) -> float | None:
        """Seconds until the next delivery of ``sink`` that may go (a head) becomes due (0 or
        less: it is due); ``None`` when there is none.

        A head another process holds counts from its claim's deadline, when it may lapse.
        """
        d = DELIVERIES
        at = sa.case(
            (d.c.claimed_until > d.c.next_attempt_at, d.c.claimed_until), else_=d.c.next_attempt_at
        )
        heads = self._heads(sink, (), sa.select(at.label("at"))).subquery()
        with self.engine.connect() as conn:
            query = sa.select(sa.func.min(heads.c.at).label("at"), dbtime.now(conn).label("now"))
            row = conn.execute(query).one()
        if row.at is None:
            return None
        at_ = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
        return float((at_ - row.now).total_seconds())

    def has_pending(self, sink: str) -> bool:
        d = DELIVERIES
        query = sa.select(d.c.id).where(d.c.sink == sink, d.c.status == PENDING).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def record(self, records: Sequence[AttemptRecord]) -> list[int]:
        """Write finished attempts: the delivery's new state and a row in the delivery log.

        Only where the attempt's claim still holds the delivery, and it is still pending
        (compare-and-set): the ids of the others — whose claim lapsed and was taken, or was
        cleared by a replay, or that are delivered or dead already — are returned, and
        nothing of theirs is written. The attempt is dated, and its retry is due, in the
        database's time.
        """
        if not records:
            return []
        d = DELIVERIES
        with self.engine.begin() as conn:
            now = dbtime.now(conn)
            update = (
                d.update()
                .where(d.c.id == sa.bindparam("_id"))
                .values(
                    claim_token=None,
                    claimed_until=None,
                    attempts=d.c.attempts + 1,
                    status=sa.bindparam("_status"),
                    next_attempt_at=dbtime.after_param(conn, "_retry"),
                    last_attempt_at=now,
                    last_status_code=sa.bindparam("_code"),
                    last_error=sa.bindparam("_error"),
                    last_duration_ms=sa.bindparam("_ms"),
                    last_outcome=sa.bindparam("_outcome"),
                    delivered_at=sa.case(
                        (sa.bindparam("_ok", type_=sa.Boolean()), now), else_=d.c.delivered_at
                    ),
                )
            )
            # lock the rows still held under each attempt's claim, so none changes hands
            # between this check and the write
            lock = (
                d.update()
                .where(_owned([(r.delivery_id, r.claim) for r in records]), d.c.status == PENDING)
                .values(claim_token=d.c.claim_token)
                .returning(d.c.id)
            )
            owned = set(conn.scalars(lock))
            lost = [r.delivery_id for r in records if r.delivery_id not in owned]
            records = [r for r in records if r.delivery_id in owned]
            if not records:
                return lost
            conn.execute(
                update,
                [
                    {
                        "_id": r.delivery_id,
                        "_status": r.status,
                        "_retry": dbtime.delay(conn, r.retry_in),
                        "_code": r.status_code,
                        "_error": r.error[:1000] if r.error else None,
                        "_ms": r.duration_ms,
                        "_outcome": r.outcome,
                        "_ok": r.ok,
                    }
                    for r in records
                ],
            )
            conn.execute(
                ATTEMPTS.insert().values(attempted_at=now),
                [
                    {
                        "delivery_id": r.delivery_id,
                        "ok": r.ok,
                        "status_code": r.status_code,
                        "error": r.error[:1000] if r.error else None,
                        "duration_ms": r.duration_ms,
                    }
                    for r in records
                ],
            )
        return lost

    def expire(self, sink: str, max_age: float) -> int:
        """Mark dead every pending delivery of ``sink`` created more than ``max_age`` s ago.

        Not one another process is sending (its claim is live): its result decides.
        """
        d = DELIVERIES
        with self.engine.begin() as conn:
            result = conn.execute(
                d.update()
                .where(
                    d.c.sink == sink,
                    d.c.status == PENDING,
                    d.c.created_at < dbtime.after(conn, -max_age),
                    _unclaimed(dbtime.now(conn)),
                )
                .values(status=DEAD, last_error=sa.func.coalesce(d.c.last_error, "expired"))
            )
        return int(result.rowcount)

    def release(self, sink: str) -> int:
        """The sink recovered: what waited on its failure (not on a rejection) goes now."""
        d = DELIVERIES
        with self.engine.begin() as conn:
            now = dbtime.now(conn)
            result = conn.execute(
                d.update()
                .where(
                    d.c.sink == sink,
                    d.c.status == PENDING,
                    d.c.next_attempt_at > now,
                    sa.or_(d.c.last_outcome.is_(None), d.c.last_outcome != "rejected"),
                )
                .values(next_attempt_at=now)
            )
        return int(result.rowcount)
