"""The outbox: events enter here, whatever produced them, and leave through deliveries.

``add_events`` is called inside the producer's own transaction (a poll's, or the proxy's),
so an event and the change that caused it are committed together. ``Outbox`` is what the
dispatcher and the operator commands use afterwards.

Any number of processes share one outbox. A dispatcher *claims* the deliveries it sends:
a claim token and a deadline on each row, taken with ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL (on SQLite the file's single writer makes the conditional UPDATE enough). Only
the first pending delivery of a resource can be claimed, so a resource's events go in
order whoever sends them. Every write of an attempt's result is conditional on the claim
that took it (compare-and-set on the token): a holder whose claim lapsed, or was cleared by
an operator's replay, writes nothing and moves nothing backwards. A holder that dies
leaves its claims to lapse at their deadline, when any other process takes them again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Collection, Sequence
from typing import Any

import sqlalchemy as sa

from poller.model import Delivery, Event
from poller.store import tables
from poller.store.dialect import like_glob, upsert

_EVENTS: sa.Table = tables.EventRow.__table__  # type: ignore[attr-defined]
_DELIVERIES: sa.Table = tables.DeliveryRow.__table__  # type: ignore[attr-defined]
_ATTEMPTS: sa.Table = tables.AttemptRow.__table__  # type: ignore[attr-defined]
_SINKS: sa.Table = tables.SinkStateRow.__table__  # type: ignore[attr-defined]

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
CHANNEL = "poller_outbox"
"""The PostgreSQL NOTIFY channel new deliveries are announced on (payload: the schema)."""
STATUSES = ("pending", "failed", "dead", "delivered")
"""What operators filter on; ``failed`` is a pending delivery whose last attempt failed."""


def _event(row: Any) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        workspace=row.workspace,
        resource_id=row.resource_id,
        timestamp=row.timestamp,
        data=row.data,
    )


def add_events(
    conn: sa.Connection,
    events: Sequence[Event],
    route: Callable[[Event], Sequence[str]],
    now: dt.datetime,
) -> list[Event]:
    """Insert the events not already recorded (by id) and one delivery per routed sink.

    Returns the events that were new, in order. An id recorded before is skipped: that is
    what makes every event exactly-once by id, whoever detects it again.
    """
    if not events:
        return []
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.id, event)
    existing: set[str] = set()
    ids = list(unique)
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        existing.update(conn.scalars(sa.select(_EVENTS.c.id).where(_EVENTS.c.id.in_(part))))
    new = [e for e in unique.values() if e.id not in existing]
    if not new:
        return []
    rows = [
        {
            "id": e.id,
            "type": e.type,
            "workspace": e.workspace,
            "resource_id": e.resource_id,
            "timestamp": e.timestamp,
            "data": dict(e.data),
        }
        for e in new
    ]
    seqs = conn.scalars(
        _EVENTS.insert().returning(_EVENTS.c.seq, sort_by_parameter_order=True), rows
    ).all()
    deliveries = [
        {
            "event_seq": seq,
            "sink": sink,
            "order_key": event.order_key,
            "status": PENDING,
            "attempts": 0,
            "created_at": now,
            "next_attempt_at": now,
        }
        for seq, event in zip(seqs, new, strict=True)
        for sink in route(event)
    ]
    if deliveries:
        conn.execute(_DELIVERIES.insert(), deliveries)
        if conn.dialect.name == "postgresql":
            # sent at commit; listeners of other schemas of the database ignore it
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, sa.func.current_schema())))
    return new


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


@dataclasses.dataclass(frozen=True, slots=True)
class SinkState:
    """Durable state of one sink."""

    name: str
    enabled: bool = True
    disabled_reason: str | None = None
    failing_since: dt.datetime | None = None
    next_probe_at: dt.datetime | None = None

    @property
    def circuit_open(self) -> bool:
        return self.failing_since is not None


@dataclasses.dataclass(frozen=True, slots=True)
class SinkStats:
    """Outbox figures of one sink."""

    name: str
    pending: int = 0
    failing: int = 0
    dead: int = 0
    delivered: int = 0
    oldest_pending_at: dt.datetime | None = None


def _delivery_query() -> sa.Select[Any]:
    d, e = _DELIVERIES, _EVENTS
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
        event=_event(row),
        attempts=row.attempts,
        created_at=row.created_at,
        next_attempt_at=row.next_attempt_at,
        claim=claim,
    )


def _unclaimed(now: dt.datetime) -> sa.ColumnElement[bool]:
    """Nobody holds it: never claimed, claim written back, or the holder's deadline passed."""
    d = _DELIVERIES
    return sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)


def _owned(claims: Sequence[tuple[int, str | None]]) -> sa.ColumnElement[bool]:
    """Rows still held under the given (delivery id, claim) pairs; None: held by nobody."""
    d = _DELIVERIES
    held = [(i, c) for i, c in claims if c is not None]
    free = [i for i, c in claims if c is None]
    return sa.or_(
        sa.tuple_(d.c.id, d.c.claim_token).in_(held) if held else sa.false(),
        sa.and_(d.c.id.in_(free), d.c.claim_token.is_(None)) if free else sa.false(),
    )


class Outbox:
    """Queries and updates over events, deliveries, attempts and sink state."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- dispatcher --------------------------------------------------------------------

    def _heads(
        self, sink: str, exclude: Collection[int], query: sa.Select[Any] | None = None
    ) -> sa.Select[Any]:
        """Pending deliveries of ``sink`` with no earlier pending delivery of the same resource.

        ``query`` is what to select them with (default: whole deliveries with their events).
        """
        d = _DELIVERIES
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
        d = _DELIVERIES
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
        d = _DELIVERIES
        ids = (
            self._heads(sink, exclude, sa.select(d.c.id))
            .where(d.c.next_attempt_at <= now, _unclaimed(now))
            .order_by(d.c.next_attempt_at, d.c.event_seq)
            .limit(limit)
        )
        return self._claim(ids, until, order=(d.c.next_attempt_at, d.c.event_seq))

    def claim_probe(self, sink: str, now: dt.datetime, until: dt.datetime) -> Delivery | None:
        """Claim the delivery a failing sink is probed with (see ``probe_candidate``)."""
        d = _DELIVERIES
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
        d = _DELIVERIES
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
        d = _DELIVERIES
        with self.engine.begin() as conn:
            result = conn.execute(
                d.update().where(d.c.claim_token.in_(list(claims))).values(claimed_until=until)
            )
        return int(result.rowcount)

    def unclaim(self, claims: Sequence[tuple[int, str]]) -> None:
        """Give back deliveries claimed and not attempted: others may take them at once."""
        if not claims:
            return
        d = _DELIVERIES
        with self.engine.begin() as conn:
            conn.execute(
                d.update().where(_owned(claims)).values(claim_token=None, claimed_until=None)
            )

    def probe_candidate(self, sink: str, now: dt.datetime) -> Delivery | None:
        """The delivery a failing sink is probed with: its oldest due head, else its oldest head."""
        d = _DELIVERIES
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
        d = _DELIVERIES
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
        d = _DELIVERIES
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
        d = _DELIVERIES
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
                _ATTEMPTS.insert(),
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
        d = _DELIVERIES
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
        d = _DELIVERIES
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

    # -- sink state --------------------------------------------------------------------

    def sink_state(self, name: str) -> SinkState:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_SINKS).where(_SINKS.c.name == name)).first()
        if row is None:
            return SinkState(name=name)
        return SinkState(
            name=name,
            enabled=row.enabled,
            disabled_reason=row.disabled_reason,
            failing_since=row.failing_since,
            next_probe_at=row.next_probe_at,
        )

    def save_sink_state(self, state: SinkState) -> None:
        with self.engine.begin() as conn:
            upsert(conn, _SINKS, [dataclasses.asdict(state)], ("name",))

    # -- operators ---------------------------------------------------------------------

    def sink_stats(self) -> dict[str, SinkStats]:
        """Pending, failing, dead and delivered counts and the oldest pending, per sink."""
        d = _DELIVERIES
        failing = sa.and_(d.c.status == PENDING, d.c.attempts > 0)
        query = sa.select(
            d.c.sink,
            sa.func.sum(sa.case((d.c.status == PENDING, 1), else_=0)),
            sa.func.sum(sa.case((failing, 1), else_=0)),
            sa.func.sum(sa.case((d.c.status == DEAD, 1), else_=0)),
            sa.func.sum(sa.case((d.c.status == DELIVERED, 1), else_=0)),
            sa.func.min(sa.case((d.c.status == PENDING, d.c.created_at), else_=None)),
        ).group_by(d.c.sink)
        stats: dict[str, SinkStats] = {}
        with self.engine.connect() as conn:
            for sink, pending, fail, dead, delivered, oldest in conn.execute(query):
                if oldest is not None and oldest.tzinfo is None:
                    oldest = oldest.replace(tzinfo=dt.UTC)
                stats[sink] = SinkStats(
                    sink,
                    int(pending or 0),
                    int(fail or 0),
                    int(dead or 0),
                    int(delivered or 0),
                    oldest,
                )
        return stats

    def list_deliveries(
        self,
        *,
        status: str | None = None,
        sink: str | None = None,
        event_type: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Deliveries, newest first, for ``poller events list``.

        ``failing``: pending, and its last attempt failed. ``attempts`` counts every attempt
        in the log, before a replay too, as ``event_detail`` does.
        """
        d, e, a = _DELIVERIES, _EVENTS, _ATTEMPTS
        logged = (
            sa.select(sa.func.count())
            .where(a.c.delivery_id == d.c.id)
            .correlate(d)
            .scalar_subquery()
        )
        query = (
            sa.select(
                e.c.id,
                e.c.type,
                e.c.timestamp,
                e.c.resource_id,
                d.c.sink,
                d.c.status,
                sa.and_(d.c.status == PENDING, d.c.attempts > 0).label("failing"),
                logged.label("attempts"),
                d.c.last_status_code,
                d.c.last_error,
                d.c.next_attempt_at,
                d.c.delivered_at,
            )
            .join(e, e.c.seq == d.c.event_seq)
            .order_by(d.c.event_seq.desc(), d.c.sink)
            .limit(limit)
        )
        if status == "failed":
            query = query.where(d.c.status == PENDING, d.c.attempts > 0)
        elif status is not None:
            query = query.where(d.c.status == status)
        if sink is not None:
            query = query.where(d.c.sink == sink)
        if event_type is not None:
            query = query.where(like_glob(e.c.type, event_type))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def event_detail(self, event_id: str) -> dict[str, Any] | None:
        """An event's envelope and every attempt of each of its deliveries."""
        d, e, a = _DELIVERIES, _EVENTS, _ATTEMPTS
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(e).where(e.c.id == event_id)).first()
            if row is None:
                return None
            deliveries = []
            for drow in conn.execute(
                sa.select(d).where(d.c.event_seq == row.seq).order_by(d.c.sink)
            ):
                attempts = [
                    dict(x._mapping)
                    for x in conn.execute(
                        sa.select(
                            a.c.attempted_at, a.c.ok, a.c.status_code, a.c.error, a.c.duration_ms
                        )
                        .where(a.c.delivery_id == drow.id)
                        .order_by(a.c.id)
                    )
                ]
                deliveries.append(
                    {
                        "sink": drow.sink,
                        "status": drow.status,
                        # every attempt in the log, before a replay too (the row's own
                        # count restarts at a replay, for the retry schedule)
                        "attempts": len(attempts),
                        "next_attempt_at": drow.next_attempt_at,
                        "delivered_at": drow.delivered_at,
                        "log": attempts,
                    }
                )
        return {"event": _event(row).envelope(), "deliveries": deliveries}

    def replay(
        self,
        now: dt.datetime,
        *,
        ids: Sequence[str] = (),
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        sink: str | None = None,
    ) -> int:
        """Queue events again (delivered or dead ones too), under the same ids.

        Each chosen delivery becomes pending and due now; its attempt count restarts so the
        retry schedule applies afresh. A claim on it is cleared: an attempt in flight then
        writes nothing back, and the delivery goes again. Returns how many were queued.
        """
        d, e = _DELIVERIES, _EVENTS
        seqs = sa.select(e.c.seq)
        if ids:
            seqs = seqs.where(e.c.id.in_(list(ids)))
        if since is not None:
            seqs = seqs.where(e.c.timestamp >= since)
        if until is not None:
            seqs = seqs.where(e.c.timestamp <= until)
        stmt = d.update().where(d.c.event_seq.in_(seqs.scalar_subquery()))
        if sink is not None:
            stmt = stmt.where(d.c.sink == sink)
        stmt = stmt.values(
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            last_outcome=None,
            claim_token=None,
            claimed_until=None,
        )
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount)

    def known_event_ids(self, ids: Sequence[str]) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.scalars(sa.select(_EVENTS.c.id).where(_EVENTS.c.id.in_(list(ids)))))

    def events(self, *, limit: int | None = None) -> list[Event]:
        """Recorded events in order (tests and the status command read them)."""
        query = sa.select(_EVENTS).order_by(_EVENTS.c.seq)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_event(r) for r in conn.execute(query)]
