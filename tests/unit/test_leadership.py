"""The leadership loop's own logic, over a fake of the lease statements."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from poller.leadership import Leadership, default_replica_id


class BrokenLeases:
    """Lease statements whose every call fails, as a store that went away (time passes)."""

    replica = "a"
    ttl = 3.0

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        def fail(*_args: object) -> None:
            self.clock.now += 2
            raise RuntimeError("the store went away")

        return fail


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_replica_id_is_host_and_pid() -> None:
    """Without ha.replica_id, a replica is named HOSTNAME:PID."""
    name, _, pid = default_replica_id({"HOSTNAME": "poller-7d9f-abc"}).partition(":")
    assert name == "poller-7d9f-abc" and pid.isdigit()


async def run_until_lost(leadership: Leadership) -> tuple[list[str], list[str]]:
    """Run the loop until it reports a lease lost: (lost, warnings logged)."""
    lost: list[str] = []
    stop = asyncio.Event()

    def on_lost(workspace: str) -> None:
        lost.append(workspace)
        stop.set()

    leadership.on_lost = on_lost
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(leadership.run(stop), timeout=10)
    return lost, [e["event"] for e in logs if e["log_level"] == "warning"]


async def test_a_failing_turn_lets_untrusted_leases_go() -> None:
    """A turn that fails is logged; a lease no longer trusted is given up, the loop goes on."""
    clock = Clock()
    leadership = Leadership(BrokenLeases(clock), ["w1"], monotonic=clock)  # type: ignore[arg-type]
    leadership.held, leadership.trusted_until = {"w1": 4}, clock.now + 1
    lost, warnings = await run_until_lost(leadership)
    assert lost == ["w1"] and leadership.held == {}
    assert warnings == ["leases_not_renewed"]
    assert leadership.not_ready() == ["leases: no turn of the leadership loop yet"]


async def test_a_stalled_replica_stops_polling_even_when_it_cannot_release() -> None:
    """Late past the trusted time and the store away: the leases still count as lost here."""
    clock = Clock()
    leadership = Leadership(BrokenLeases(clock), ["w1"], monotonic=clock)  # type: ignore[arg-type]
    leadership.held, leadership.trusted_until = {"w1": 4}, clock.now - 1
    lost, warnings = await run_until_lost(leadership)
    assert lost == ["w1"] and leadership.held == {}
    assert warnings == ["leadership_stalled", "leases_not_released"]
