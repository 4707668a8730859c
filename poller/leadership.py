"""Which workspaces this replica polls, when several ``poller run`` share one PostgreSQL store.

Every third of the lease TTL a replica beats its heartbeat, renews the leases it holds,
and balances: with ``n`` live replicas it holds at most ``ceil(workspaces / n)`` leases,
releasing the surplus and taking free or expired leases up to that share. The runner hears
of each lease gained or lost (``on_gained``, ``on_lost``) and starts or stops that
workspace's polling. Every replica delivers; only a workspace's leader polls it.

A lease is trusted locally for two thirds of the TTL after its last renewal began: a replica
whose loop stalls past that (a third of the TTL late) refuses its own writes through the
fence at once, and gives its leases up when its loop turns again — before the database
lets another replica take them. The fence then checks the lease in the database too, at
the epoch the poll began under. ``holding`` leads every workspace for the length of a
one-off run (``poller once``) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import sqlalchemy as sa
import structlog

from poller import utils
from poller.exceptions import LeaseLost, WorkspaceLed
from poller.store.leases import STALE, Leases, all_leases
from poller.store.sql import Fence

log = structlog.get_logger("poller.leadership")

TRUST = 2 / 3
"""Share of the TTL a renewed lease is trusted locally (renewals come every third)."""


def default_replica_id(environ: Mapping[str, str] | None = None) -> str:
    """``HOSTNAME:PID``: the pod or host name, and this process."""
    env = os.environ if environ is None else environ
    return f"{env.get('HOSTNAME') or socket.gethostname()}:{os.getpid()}"


def share(workspaces: int, live: int) -> int:
    """How many workspaces one of ``live`` replicas leads at most."""
    return math.ceil(workspaces / max(live, 1))


class Leadership:
    """This replica's leases: taken, renewed, balanced and released on a loop of its own."""

    def __init__(
        self,
        leases: Leases,
        workspaces: Sequence[str],
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.leases = leases
        self.workspaces = tuple(workspaces)
        self.monotonic = monotonic
        self.held: dict[str, int] = {}
        """Workspace → epoch of the leases this replica holds (replaced whole, never edited)."""
        self.trusted_until = 0.0
        self.renewed_at: float | None = None
        self.on_gained: Callable[[str], None] = lambda _workspace: None
        self.on_lost: Callable[[str], None] = lambda _workspace: None

    @property
    def replica(self) -> str:
        return self.leases.replica

    @property
    def ttl(self) -> float:
        return self.leases.ttl

    @property
    def interval(self) -> float:
        """Seconds between two turns: a third of the TTL."""
        return self.ttl / 3

    def fence(self, workspace: str) -> Fence:
        """The fence of one poll of ``workspace``, bound to the lease's epoch as it begins.

        Called before the poll reads anything (raises ``LeaseLost`` if this replica does not
        lead the workspace now). Its write — checked as the transaction opens and again
        just before it commits — goes through only while this replica still holds the
        lease at that same epoch: a lease lost and taken back meanwhile has a newer epoch,
        and another replica may have written in between.
        """
        epoch = self.held.get(workspace)
        if epoch is None:
            raise LeaseLost(f"workspace {workspace}: this replica does not lead it")

        def check(conn: sa.Connection) -> None:
            now = self.held.get(workspace)
            if now != epoch:
                raise LeaseLost(
                    f"workspace {workspace}: the lease changed hands since this poll began "
                    f"(epoch {epoch}, now {now if now is not None else 'not held'}); "
                    "nothing is written"
                )
            if self.monotonic() > self.trusted_until:
                raise LeaseLost(
                    f"workspace {workspace}: the lease was not renewed in time "
                    "(this replica stalled); nothing is written"
                )
            self.leases.fence(conn, workspace, epoch)

        return check

    def turn(self, *, balance: bool = True) -> tuple[dict[str, int], list[str]]:
        """One turn (blocking; run in a thread): beat, renew, balance. (gained, lost).

        ``balance=False`` (a one-off run holding every lease, ``holding``) only renews:
        no heartbeat, so the replicas' shares do not count it, and nothing is taken.
        """
        began = self.monotonic()
        held = self.held
        if held and began > self.trusted_until:
            # the loop stalled past what a lease is trusted for: stop polling before the
            # database lets anyone else in, and take leases again only at the next turn
            self.held = {}
            log.warning(
                "leadership_stalled",
                late_s=round(began - self.trusted_until + self.ttl / 3, 3),
                released=sorted(held),
            )
            try:
                self.leases.release(held)
            except Exception as exc:  # they lapse on their own; what matters is to stop
                log.warning("leases_not_released", error=utils.first_line(exc))
            return {}, sorted(held)
        if not balance:
            renewed = self.leases.renew(held)
            self.held = renewed
            self.trusted_until = began + self.ttl * TRUST
            self.renewed_at = began
            return {}, sorted(w for w in held if renewed.get(w) != held[w])
        live = self.leases.heartbeat()
        ended = self.leases.end_stale_transactions()
        if ended:
            log.warning(
                "stale_transactions_ended",
                count=ended,
                waiting_over_s=round(self.ttl * STALE, 3),
                replica=self.replica,
            )
        renewed = self.leases.renew(held)
        lost = sorted(w for w in held if renewed.get(w) != held[w])
        limit = share(len(self.workspaces), live)
        gained: dict[str, int] = {}
        if len(renewed) > limit:
            surplus = {w: renewed[w] for w in sorted(renewed)[limit:]}
            renewed = {w: e for w, e in renewed.items() if w not in surplus}
            self.held = renewed
            self.leases.release(surplus)
            lost.extend(sorted(surplus))
        elif len(renewed) < limit:
            wanted = [w for w in self.workspaces if w not in renewed]
            gained = self.leases.acquire(wanted, limit - len(renewed))
            renewed = {**renewed, **gained}
        self.held = renewed
        self.trusted_until = began + self.ttl * TRUST
        self.renewed_at = began
        return gained, lost

    def _lapsed(self) -> list[str]:
        """After a failed turn: the leases no longer trusted (dropped without the database)."""
        if not self.held or self.monotonic() <= self.trusted_until:
            return []
        lapsed, self.held = sorted(self.held), {}
        return lapsed

    async def run(self, stop: asyncio.Event, *, balance: bool = True) -> None:
        """Turn every third of the TTL until ``stop`` is set (``leave`` then releases)."""
        if balance:
            log.info("leadership_started", replica=self.replica, ttl_s=self.ttl)
        while not stop.is_set():
            began = self.monotonic()
            try:
                gained, lost = await asyncio.to_thread(self.turn, balance=balance)
            except Exception as exc:  # the store, or anything else: the leases then lapse
                log.warning("leases_not_renewed", error=utils.first_line(exc))
                gained, lost = {}, self._lapsed()
            for workspace in lost:
                log.info("lease_lost", workspace=workspace, replica=self.replica)
                self.on_lost(workspace)
            for workspace, epoch in sorted(gained.items()):
                log.info("lease_gained", workspace=workspace, epoch=epoch, replica=self.replica)
                self.on_gained(workspace)
            delay = max(0.0, began + self.interval - self.monotonic())
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Lead every workspace while the block runs, then release them (``poller once``).

        Free and expired leases are taken at a new epoch; a lease a live replica holds
        refuses the lot (``WorkspaceLed``, naming that replica) after what was taken is
        given back. Meanwhile the leases are renewed every third of the TTL (``turn``
        without balancing), and every write is fenced as a replica's is.
        """
        await asyncio.to_thread(self._take_all)
        stop = asyncio.Event()
        renewing = asyncio.create_task(self.run(stop, balance=False), name="leases-renewal")
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(renewing, return_exceptions=True)
            held, self.held = self.held, {}
            try:
                await asyncio.to_thread(self.leases.release, held)
            except sa.exc.SQLAlchemyError as exc:  # they lapse at their expiry
                log.warning("leases_not_released", error=utils.first_line(exc))

    def _take_all(self) -> None:
        began = self.monotonic()
        taken = self.leases.acquire(self.workspaces, len(self.workspaces))
        led = [w for w in self.workspaces if w not in taken]
        if led:
            self.leases.release(taken)
            lease = next((x for x in all_leases(self.leases.engine) if x.workspace == led[0]), None)
            holder = (lease.holder if lease is not None else None) or "(changing hands)"
            raise WorkspaceLed(
                f"workspace {led[0]} is polled by the running replica {holder}; "
                "poller once polls only workspaces no replica leads: leave them to the "
                "replicas, or stop the replicas first"
            )
        self.held = taken
        self.trusted_until = began + self.ttl * TRUST
        self.renewed_at = began

    async def leave(self) -> None:
        """Release every lease and the heartbeat: the other replicas take over at their turn."""
        held, self.held = self.held, {}
        try:
            await asyncio.to_thread(self.leases.leave, held)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("leases_not_released", error=utils.first_line(exc))
            return
        log.info("leases_released", workspaces=sorted(held), replica=self.replica)

    def not_ready(self) -> list[str]:
        """Why this replica is not ready: its leases have not been renewed for a TTL."""
        if self.renewed_at is None:
            return ["leases: no turn of the leadership loop yet"]
        age = self.monotonic() - self.renewed_at
        if age > self.ttl:
            return [f"leases: not renewed for {utils.format_duration(age)} (is the store up?)"]
        return []
