"""The claims one sink worker holds, and how far it trusts each: plain bookkeeping, the
monotonic clock passed in.

A claim's deadline is the database's (``Outbox.claim``: ``ttl`` seconds from its time); a
worker cannot read that clock at every turn, so it reckons on its own monotonic one, as
leases do: a claim taken or renewed by a call that began at ``t`` is trusted until
``t + TRUST * ttl``, a third of its time before the database may let another process take
it. Renewals come every third, so a live worker never reaches that point; one that froze
or lost the store does, and must not start what it holds (its owner gives it back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Collection, Iterable

from poller.model import Delivery

TRUST = 2 / 3
"""Share of a claim's time it is trusted locally after it was taken or renewed."""


@dataclasses.dataclass(slots=True)
class _Claim:
    taken: float
    """Monotonic time just before it was taken."""
    confirmed: float
    """Monotonic time just before it was taken or last renewed."""


class Holding:
    """Delivery id → claim, for what a worker has claimed and not yet written or given back."""

    def __init__(self, ttl: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.monotonic = monotonic
        self.held: dict[int, str] = {}
        self._claims: dict[str, _Claim] = {}

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self.held

    def take(self, deliveries: Iterable[Delivery], began: float) -> None:
        """Hold what a claim call that began at ``began`` returned."""
        for delivery in deliveries:
            if delivery.claim is not None:
                self.held[delivery.id] = delivery.claim
                self._claims.setdefault(delivery.claim, _Claim(began, began))

    def claim_of(self, delivery_id: int) -> str | None:
        return self.held.get(delivery_id)

    def trusted(self, delivery: Delivery) -> bool:
        """Its claim is surely still this worker's: held, and taken or renewed less than
        ``TRUST`` of its time ago."""
        claim = self._claims.get(delivery.claim or "")
        if claim is None or self.held.get(delivery.id) != delivery.claim:
            return False
        return self.monotonic() - claim.confirmed < TRUST * self.ttl

    def renewal_in(self) -> float:
        """Seconds until the claims held are due for renewal (a third of their time)."""
        if not self.held:
            return math.inf
        oldest = min(c.confirmed for c in self._claims.values())
        return max(0.0, oldest + self.ttl / 3 - self.monotonic())

    def tokens(self) -> set[str]:
        return set(self.held.values())

    def renewed(self, tokens: Collection[str], kept: Collection[int], began: float) -> list[int]:
        """A renewal of ``tokens`` that began at ``began`` kept the rows ``kept``: forget the
        others (another process took them, or a replay cleared them); return their ids."""
        kept = set(kept)
        lost = [i for i, token in self.held.items() if token in tokens and i not in kept]
        self.forget(lost)
        for token in tokens:
            if token in self._claims:
                self._claims[token].confirmed = began
        return lost

    def forget(self, delivery_ids: Iterable[int]) -> None:
        """These are no longer held (written back, given back, or lost)."""
        for delivery_id in delivery_ids:
            self.held.pop(delivery_id, None)
        if len(self._claims) > len(self.held):
            tokens = self.tokens()
            self._claims = {t: c for t, c in self._claims.items() if t in tokens}

    def outbox_now(self, delivery: Delivery) -> dt.datetime | None:
        """The outbox's (the database's) time now, reckoned from when the claim was taken;
        ``None`` for a delivery nobody claimed."""
        if delivery.claimed_at is None:
            return None
        claim = self._claims.get(delivery.claim or "")
        elapsed = self.monotonic() - claim.taken if claim is not None else 0.0
        return delivery.claimed_at + dt.timedelta(seconds=elapsed)
