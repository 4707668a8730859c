"""The outbox as the dispatcher drains it: claim due deliveries, record attempts, give back.

Any number of processes share one outbox. A dispatcher *claims* the deliveries it sends:
a claim token and a deadline on each row, taken with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (on SQLite the file's single writer makes the conditional UPDATE enough). Only
the first pending delivery of a resource can be claimed, so a resource's events go in
order whoever sends them. Every write of an attempt's result is conditional on the claim
that took it (compare-and-set on the token): a holder whose claim lapsed, or was cleared by
an operator's replay, writes nothing and moves nothing backwards. A holder that dies
leaves its claims to lapse at their deadline, when any other process takes them again.

Events enter through ``intake``; operators read and replay through ``ledger``; a sink's
circuit and enablement live in ``sinkstate``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa

from poller.model import Delivery
from poller.store import tables
from poller.store.rows import ATTEMPTS, DEAD, DELIVERIES, EVENTS, PENDING, event_of


@dataclasses.dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One finished attempt and where it leaves its delivery."""

    delivery_id: int
    attempted_at: dt.datetime
    ok: bool
    outcome: str
    """``delivered``, ``transient``, ``rejected`` or ``gone``."""
    status: str
    """The delivery's status afterwards: pending, delivered or dead."""
    next_attempt_at: dt.datetime
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


def _delivery(row: Any, claim: str | None = None) -> Delivery:
    return Delivery(
        id=row.delivery_id,
        sink=row.sink,
        event=event_of(row),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        claim=claim,
    )


def _unclaimed(now: dt.datetime) -> sa.ColumnElement[bool]:
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

    def due(
        self, sink: str, now: dt.datetime, limit: int, exclude: Collection[int] = ()
    ) -> list[Delivery]:
        """Deliveries of ``sink`` that may go now, longest due first, a resource's in order."""
        d = DELIVERIES
        query = (
            self._heads(sink, exclude)
            .where(d.c.next_attempt_at <= now, _unclaimed(now))
            .order_by(d.c.next_attempt_at, d.c.event_seq)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [_delivery(r) for r in conn.execute(query)]

    def claim(
        self,
        sink: str,
        now: dt.datetime,
        limit: int,
        until: dt.datetime,
        exclude: Collection[int] = (),
    ) -> list[Delivery]:
        """Claim up to ``limit`` deliveries of ``sink`` that may go now, until ``until``.

        What ``due`` offers, less what another process holds; each returned delivery carries
        the claim its writes must present. Rows another transaction is claiming are skipped,
        not waited for.
        """
        d = DELIVERIES
        ids = (
            self._heads(sink, exclude, sa.select(d.c.id))
            .where(d.c.next_attempt_at <= now, _unclaimed(now))
            .order_by(d.c.next_attempt_at, d.c.event_seq)
            .limit(limit)
        )
        return self._claim(ids, until, order=(d.c.next_attempt_at, d.c.event_seq))

    def claim_probe(self, sink: str, now: dt.datetime, until: dt.datetime) -> Delivery | None:
        """Claim the delivery a failing sink is probed with (see ``probe_candidate``)."""
        d = DELIVERIES
        ids = (
            self._heads(sink, (), sa.select(d.c.id))
            .where(_unclaimed(now))
            .order_by(sa.case((d.c.next_attempt_at <= now, 0), else_=1), d.c.event_seq)
            .limit(1)
        )
        claimed = self._claim(ids, until, order=(d.c.event_seq,))
        return claimed[0] if claimed else None

    def _claim(
        self, ids: sa.Select[Any], until: dt.datetime, order: Sequence[sa.ColumnElement[Any]]
    ) -> list[Delivery]:
        d = DELIVERIES
        token = uuid.uuid4().hex
        locked = ids.with_for_update(of=d, skip_locked=True).scalar_subquery()
        claim = (
            d.update()
            .where(d.c.id.in_(locked))
            .values(claim_token=token, claimed_until=until)
            .returning(d.c.id)
        )
        with self.engine.begin() as conn:
            claimed = list(conn.scalars(claim))
            if not claimed:
                return []
            rows = conn.execute(_delivery_query().where(d.c.id.in_(claimed)).order_by(*order))
            return [_delivery(r, token) for r in rows]

    def renew(self, claims: Collection[str], until: dt.datetime) -> int:
        """Push the deadline of the rows still held under ``claims`` to ``until``."""
        if not claims:
            return 0
        d = DELIVERIES
        with self.engine.begin() as conn:
            result = conn.execute(
                d.update().where(d.c.claim_token.in_(list(claims))).values(claimed_until=until)
            )
        return int(result.rowcount)

    def unclaim(self, claims: Sequence[tuple[int, str]]) -> None:
        """Give back deliveries claimed and not attempted: others may take them at once."""
        if not claims:
            return
        d = DELIVERIES
        with self.engine.begin() as conn:
            conn.execute(
                d.update().where(_owned(claims)).values(claim_token=None, claimed_until=None)
            )

    def probe_candidate(self, sink: str, now: dt.datetime) -> Delivery | None:
        """The delivery a failing sink is probed with: its oldest due head, else its oldest head."""
        d = DELIVERIES
        query = (
            self._heads(sink, ())
            .order_by(sa.case((d.c.next_attempt_at <= now, 0), else_=1), d.c.event_seq)
            .limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return _delivery(row) if row else None

    def next_due_at(self, sink: str) -> dt.datetime | None:
        """When the next delivery of ``sink`` that may go (a head) becomes due.

        A head another process holds counts from its claim's deadline, when it may lapse.
        """
        d = DELIVERIES
        at = sa.case(
            (d.c.claimed_until > d.c.next_attempt_at, d.c.claimed_until), else_=d.c.next_attempt_at
        )
        heads = self._heads(sink, (), sa.select(at.label("at"))).subquery()
        query = sa.select(sa.func.min(heads.c.at))
        with self.engine.connect() as conn:
            value = conn.scalar(query)
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value  # type: ignore[no-any-return]

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
        nothing of theirs is written.
        """
        if not records:
            return []
        d = DELIVERIES
        update = (
            d.update()
            .where(d.c.id == sa.bindparam("_id"))
            .values(
                claim_token=None,
                claimed_until=None,
                attempts=d.c.attempts + 1,
                status=sa.bindparam("_status"),
                next_attempt_at=sa.bindparam("_next"),
                last_attempt_at=sa.bindparam("_at"),
                last_status_code=sa.bindparam("_code"),
                last_error=sa.bindparam("_error"),
                last_duration_ms=sa.bindparam("_ms"),
                last_outcome=sa.bindparam("_outcome"),
                delivered_at=sa.func.coalesce(
                    sa.bindparam("_delivered", type_=tables.UTCDateTime()), d.c.delivered_at
                ),
            )
        )
        with self.engine.begin() as conn:
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
                        "_next": r.next_attempt_at,
                        "_at": r.attempted_at,
                        "_code": r.status_code,
                        "_error": r.error[:1000] if r.error else None,
                        "_ms": r.duration_ms,
                        "_outcome": r.outcome,
                        "_delivered": r.attempted_at if r.ok else None,
                    }
                    for r in records
                ],
            )
            conn.execute(
                ATTEMPTS.insert(),
                [
                    {
                        "delivery_id": r.delivery_id,
                        "attempted_at": r.attempted_at,
                        "ok": r.ok,
                        "status_code": r.status_code,
                        "error": r.error[:1000] if r.error else None,
                        "duration_ms": r.duration_ms,
                    }
                    for r in records
                ],
            )
        return lost

    def expire(self, sink: str, cutoff: dt.datetime, now: dt.datetime) -> int:
        """Mark dead every pending delivery of ``sink`` created before ``cutoff``.

        Not one another process is sending (its claim is live): its result decides.
        """
        d = DELIVERIES
        with self.engine.begin() as conn:
            result = conn.execute(
                d.update()
                .where(
                    d.c.sink == sink,
                    d.c.status == PENDING,
                    d.c.created_at < cutoff,
                    _unclaimed(now),
                )
                .values(status=DEAD, last_error=sa.func.coalesce(d.c.last_error, "expired"))
            )
        return int(result.rowcount)

    def release(self, sink: str, now: dt.datetime) -> int:
        """The sink recovered: what waited on its failure (not on a rejection) goes now."""
        d = DELIVERIES
        with self.engine.begin() as conn:
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
