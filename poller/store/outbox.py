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
from collections.abc import Callable, Collection, Iterable, Sequence
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


_EVENT_COLUMNS = ("id", "type", "workspace", "resource_id", "timestamp", "data")
"""What a claim reads of each delivery's event (``rows.event_of``)."""


def _delivery_query() -> sa.Select[Any]:
    d, e = DELIVERIES, EVENTS
    return sa.select(
        d.c.id.label("delivery_id"),
        d.c.sink,
        d.c.attempts,
        d.c.created_at,
        d.c.next_attempt_at,
        *(e.c[name] for name in _EVENT_COLUMNS),
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


def _is_head() -> sa.ColumnElement[bool]:
    """No earlier pending delivery of the same resource for the same sink.

    Asked as "is it the first pending one", one probe of ``ix_deliveries_order`` per
    candidate: PostgreSQL plans the equivalent NOT EXISTS as an anti-join, and without
    fresh statistics that join scans every pending row of the sink for each candidate.
    """
    d = DELIVERIES
    earlier = d.alias("earlier")
    first = (
        sa.select(earlier.c.event_seq)
        .where(
            earlier.c.sink == d.c.sink,
            earlier.c.order_key == d.c.order_key,
            earlier.c.status == PENDING,
        )
        .order_by(earlier.c.event_seq)
        .limit(1)
        .scalar_subquery()
    )
    return d.c.event_seq == first


def _unclaimed(now: sa.ColumnElement[dt.datetime]) -> sa.ColumnElement[bool]:
    """Nobody holds it: never claimed, claim written back, or the holder's deadline passed."""
    d = DELIVERIES
    return sa.or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)


def _owned() -> sa.ColumnElement[bool]:
    """Rows still held under the claims bound by ``_claims``.

    ``ids`` names every row, for the primary key to find them: SQLite scans the table for
    a list of (id, claim) pairs alone.
    """
    d = DELIVERIES
    return sa.and_(
        d.c.id.in_(sa.bindparam("ids", expanding=True)),
        sa.or_(
            sa.tuple_(d.c.id, d.c.claim_token).in_(sa.bindparam("held", expanding=True)),
            sa.and_(d.c.id.in_(sa.bindparam("free", expanding=True)), d.c.claim_token.is_(None)),
        ),
    )


def _claims(claims: Iterable[tuple[int, str | None]]) -> dict[str, Any]:
    """The parameters of ``_owned``: (delivery id, claim) pairs; None: held by nobody."""
    ids: list[int] = []
    held: list[tuple[int, str]] = []
    free: list[int] = []
    for delivery_id, claim in claims:
        ids.append(delivery_id)
        if claim is None:
            free.append(delivery_id)
        else:
            held.append((delivery_id, claim))
    return {"ids": ids, "held": held, "free": free}


_ATTEMPT_FIELDS: dict[str, sa.types.TypeEngine[Any]] = {
    "id": sa.Integer(),
    "claim": sa.String(),
    "status": sa.String(),
    "retry": sa.Float(),
    "code": sa.Integer(),
    "error": sa.String(),
    "ms": sa.Float(),
    "outcome": sa.String(),
    "ok": sa.Boolean(),
}
"""The fields of each attempt in a batch (``_attempt``)."""


def _batch(engine: sa.Engine) -> sa.FromClause:
    """The attempts bound as ``batch``, a JSON list of ``_attempt`` objects, as a table."""
    batch = sa.bindparam("batch", type_=sa.JSON())
    if engine.dialect.name == "postgresql":
        columns = [sa.column(name, type_) for name, type_ in _ATTEMPT_FIELDS.items()]
        return (
            sa.func.json_to_recordset(batch)
            .table_valued(*columns)
            .render_derived(name="attempt", with_types=True)
        )
    each = sa.func.json_each(batch).table_valued("value")
    fields = [
        sa.func.json_extract(each.c.value, f"$.{name}", type_=type_).label(name)
        for name, type_ in _ATTEMPT_FIELDS.items()
    ]
    return sa.select(*fields).subquery("attempt")


def _attempt(record: AttemptRecord, retry: Callable[[float], Any]) -> dict[str, Any]:
    """One attempt of a batch; ``retry``: ``dbtime.field_delay``."""
    return {
        "id": record.delivery_id,
        "claim": record.claim,
        "status": record.status,
        "retry": retry(record.retry_in),
        "code": record.status_code,
        "error": record.error[:1000] if record.error else None,
        "ms": record.duration_ms,
        "outcome": record.outcome,
        "ok": record.ok,
    }


class _Statements:
    """What the dispatcher runs for every window of deliveries, built once per outbox.

    Built once, a statement is compiled once (SQLAlchemy's cache) and what changes from
    one call to the next is bound: the sink, the ids, the claims, and on SQLite the time
    (``dbtime.now_param``), which PostgreSQL reads itself.
    """

    def __init__(self, engine: sa.Engine) -> None:
        d = DELIVERIES
        now = dbtime.now_param(engine, "now")
        heads = sa.select(d.c.id).where(
            d.c.sink == sa.bindparam("for_sink"), d.c.status == PENDING, _unclaimed(now)
        )
        due = (
            heads.where(
                d.c.next_attempt_at <= now,
                d.c.id.not_in(sa.bindparam("exclude", expanding=True)),
                _is_head(),
            )
            .order_by(d.c.next_attempt_at, d.c.event_seq)
            .limit(sa.bindparam("limit"))
        )
        probe = (
            heads.where(_is_head())
            .order_by(sa.case((d.c.next_attempt_at <= now, 0), else_=1), d.c.event_seq)
            .limit(1)
        )
        self.claim = self._claim(engine, due)
        self.claim_probe = self._claim(engine, probe)
        self.renew = (
            d.update()
            .where(d.c.claim_token.in_(sa.bindparam("claims", expanding=True)))
            .values(claimed_until=dbtime.after_param(engine, "until"))
            .returning(d.c.id)
        )
        self.unclaim = d.update().where(_owned()).values(claim_token=None, claimed_until=None)
        self.record, self.log = self._record(engine, now)
        at = sa.case(
            (d.c.claimed_until > d.c.next_attempt_at, d.c.claimed_until), else_=d.c.next_attempt_at
        )
        waiting = (
            sa.select(at.label("at"))
            .where(d.c.sink == sa.bindparam("for_sink"), d.c.status == PENDING, _is_head())
            .subquery()
        )
        self.next_due = sa.select(sa.func.min(waiting.c.at).label("at"), now.label("now"))
        self.has_pending = (
            sa.select(d.c.id)
            .where(d.c.sink == sa.bindparam("for_sink"), d.c.status == PENDING)
            .limit(1)
        )

    @staticmethod
    def _claim(engine: sa.Engine, heads: sa.Select[Any]) -> sa.Update:
        """Claim the deliveries ``heads`` selects, returning each with its event."""
        d, e = DELIVERIES, EVENTS
        claim = (
            d.update()
            .where(d.c.id.in_(heads.with_for_update(of=d, skip_locked=True).scalar_subquery()))
            .values(
                claim_token=sa.bindparam("token"),
                claimed_until=dbtime.after_param(engine, "until"),
            )
        )
        columns = [
            d.c.id.label("delivery_id"),
            d.c.sink,
            d.c.attempts,
            d.c.created_at,
            d.c.next_attempt_at,
            d.c.event_seq,
            d.c.claimed_until,
        ]
        if engine.dialect.name == "postgresql":
            return claim.where(e.c.seq == d.c.event_seq).returning(
                *columns, *(e.c[name] for name in _EVENT_COLUMNS)
            )
        # SQLite returns only the updated table's columns: each of the event's is a subquery
        event = [
            sa.select(e.c[name]).where(e.c.seq == d.c.event_seq).scalar_subquery().label(name)
            for name in _EVENT_COLUMNS
        ]
        return claim.returning(*columns, *event)

    @staticmethod
    def _record(
        engine: sa.Engine, now: sa.ColumnElement[dt.datetime]
    ) -> tuple[sa.Executable, sa.Executable | None]:
        """Write the attempts bound as ``batch`` where their claims still hold the rows,
        returning the ids written; and log them (in the same statement on PostgreSQL, else
        the second statement, given the ids as ``written``).

        One statement checks and writes each row, so none changes hands between the two.
        """
        d, a = DELIVERIES, ATTEMPTS
        attempt = _batch(engine)
        write = (
            d.update()
            .where(
                d.c.id == attempt.c.id,
                d.c.claim_token.is_not_distinct_from(attempt.c.claim),
                d.c.status == PENDING,
            )
            .values(
                claim_token=None,
                claimed_until=None,
                attempts=d.c.attempts + 1,
                status=attempt.c.status,
                next_attempt_at=dbtime.after_field(engine, attempt.c.retry),
                last_attempt_at=now,
                last_status_code=attempt.c.code,
                last_error=attempt.c.error,
                last_duration_ms=attempt.c.ms,
                last_outcome=attempt.c.outcome,
                delivered_at=sa.case((attempt.c.ok, now), else_=d.c.delivered_at),
            )
        )
        columns = [a.c.delivery_id, a.c.attempted_at, a.c.ok, a.c.status_code, a.c.error]
        columns.append(a.c.duration_ms)
        if engine.dialect.name == "postgresql":
            written = write.returning(
                d.c.id,
                d.c.last_attempt_at,
                attempt.c.ok,
                attempt.c.code,
                attempt.c.error,
                attempt.c.ms,
            ).cte("written")
            logged = a.insert().from_select(columns, sa.select(written)).cte("logged")
            return sa.select(written.c.id).add_cte(logged), None
        # SQLite returns only the updated table's columns, and writes in no CTE
        log = a.insert().from_select(
            columns,
            sa.select(
                attempt.c.id, now, attempt.c.ok, attempt.c.code, attempt.c.error, attempt.c.ms
            ).where(attempt.c.id.in_(sa.bindparam("written", expanding=True))),
        )
        return write.returning(d.c.id), log


class Outbox:
    """Claims, attempts and give-backs over the deliveries of every sink."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sql = _Statements(engine)

    def _now(self, **later: float) -> dict[str, Any]:
        """The time parameters of a statement: ``now``, and each of ``later`` s from now."""
        times = {name: dbtime.delay(self.engine, seconds) for name, seconds in later.items()}
        return {"now": dbtime.delay(self.engine, 0.0), **times}

    def _heads(self, sink: str, exclude: Collection[int]) -> sa.Select[Any]:
        """Pending deliveries of ``sink`` with no earlier pending delivery of the same resource."""
        d = DELIVERIES
        query = _delivery_query().where(d.c.sink == sink, d.c.status == PENDING, _is_head())
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
        params = {"for_sink": sink, "limit": limit, "exclude": list(exclude)}
        return self._claim(self._sql.claim, params, ttl)

    def claim_probe(self, sink: str, ttl: float) -> Delivery | None:
        """Claim the delivery a failing sink is probed with (see ``probe_candidate``)."""
        claimed = self._claim(self._sql.claim_probe, {"for_sink": sink}, ttl)
        return claimed[0] if claimed else None

    def _claim(self, statement: sa.Update, params: dict[str, Any], ttl: float) -> list[Delivery]:
        token = uuid.uuid4().hex
        with self.engine.begin() as conn:
            rows = conn.execute(statement, {**params, **self._now(until=ttl), "token": token})
            claimed = sorted(rows, key=lambda r: (r.next_attempt_at, r.event_seq))
        if not claimed:
            return []
        at = min(r.claimed_until for r in claimed) - dt.timedelta(seconds=ttl)
        return [_delivery(r, token, at) for r in claimed]

    def renew(self, claims: Collection[str], ttl: float) -> list[int]:
        """Give the rows still held under ``claims`` ``ttl`` seconds more; return their ids.

        A row of these claims that is not returned has been taken by another process (its
        claim had lapsed) or cleared by a replay: it is no longer this process's to send.
        """
        if not claims:
            return []
        with self.engine.begin() as conn:
            params = {"claims": list(claims), **self._now(until=ttl)}
            return list(conn.scalars(self._sql.renew, params))

    def unclaim(self, claims: Sequence[tuple[int, str]]) -> None:
        """Give back deliveries claimed and not attempted: others may take them at once."""
        if not claims:
            return
        with self.engine.begin() as conn:
            conn.execute(self._sql.unclaim, _claims(claims))

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
        with self.engine.connect() as conn:
            row = conn.execute(self._sql.next_due, {"for_sink": sink, **self._now()}).one()
        if row.at is None:
            return None
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=dt.UTC)
        return float((at - row.now).total_seconds())

    def has_pending(self, sink: str) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(self._sql.has_pending, {"for_sink": sink}).first() is not None

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
        retry = dbtime.field_delay(self.engine)
        with self.engine.begin() as conn:
            params = {"batch": [_attempt(r, retry) for r in records], **self._now()}
            written = set(conn.scalars(self._sql.record, params))
            if self._sql.log is not None and written:
                conn.execute(self._sql.log, {**params, "written": list(written)})
        return [r.delivery_id for r in records if r.delivery_id not in written]

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
