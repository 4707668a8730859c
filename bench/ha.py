"""Replicas on one PostgreSQL store: failover time and API cost, against the simulator.

- **failover**: three `poller run` replicas; the leader is killed with SIGKILL and a batch
  job is created at once; the figure is the time from the kill to that job's first webhook
  at a local receiver — which only the new leader can have detected. Repeated ``--rounds``
  times (the killed replica is started again between rounds), for each ``--ttls``.
- **API requests per idle cycle** with one and with three replicas: the simulator's count
  of requests over an idle window, divided by the cycles the window holds at
  ``poll.interval``. Only a workspace's leader polls it, so the two must be equal.

Needs PostgreSQL: ``$POLLER_TEST_POSTGRES_URL`` (default the test suite's database); each
run works in a schema of its own, dropped afterwards.

Usage: ``python -m bench.ha [--ttls 2,15] [--rounds 3] [--window 20]``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from bench.common import ROOT, row
from poller.simulator import Simulator, SimulatorServer
from poller.testing import Received, WebhookReceiver, baselined_sources, leader_pid

POSTGRES_URL = os.environ.get(
    "POLLER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
INTERVAL = 1.0


def wait(predicate: Callable[[], bool], limit: float = 60.0) -> None:
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        time.sleep(0.01)


@contextlib.contextmanager
def schema() -> Iterator[str]:
    """A store URL whose search_path is a fresh schema, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    url = sa.engine.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


class Group:
    """`poller run` replicas on one config."""

    def __init__(self, config: pathlib.Path, store_url: str) -> None:
        self.config = config
        self.procs: list[subprocess.Popen[bytes]] = []
        self.engine = sa.create_engine(store_url)

    def start(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POLLER_")}
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(
            [sys.executable, "-m", "poller", "run", "--config", str(self.config)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def holder(self) -> int | None:
        return leader_pid(self.engine)

    def baselined(self) -> bool:
        return baselined_sources(self.engine) == 4

    def leader(self) -> subprocess.Popen[bytes]:
        pid = leader_pid(self.engine)
        return next(p for p in self.procs if p.pid == pid)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.wait(timeout=30)
        self.procs.clear()
        self.engine.dispose()


def config(
    directory: pathlib.Path, api: str, store_url: str, ttl: float, hook: str
) -> pathlib.Path:
    path = directory / f"poller-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(
        f"mistral:\n  base_url: {api}\nstore:\n  url: '{store_url}'\nha:\n  lease_ttl: {ttl}s\n"
        f"poll:\n  interval: {INTERVAL}s\n  active_interval: {INTERVAL}s\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n"
        "    secret: whsec_YmVuY2gtc2VjcmV0LW9mLTMyLWJ5dGVzISEhISEhISE=\n"
        "log:\n  level: warning\n  format: json\n"
    )
    return path


def failover(directory: pathlib.Path, ttl: float, rounds: int) -> list[float]:
    """Seconds from SIGKILL of the leader to the first webhook of a job made after it."""
    times = []
    simulator = Simulator(seed=11)
    with SimulatorServer(simulator) as server, WebhookReceiver() as receiver, schema() as url:
        group = Group(config(directory, server.url, url, ttl, receiver.url + "/hook"), url)
        try:
            group.start()  # the first one makes the schema
            wait(lambda: group.holder() is not None)
            for _ in range(2):
                group.start()
            wait(lambda: group.holder() is not None and group.baselined())
            for _ in range(rounds):
                victim = group.leader()
                victim.kill()
                killed_at = time.time()
                victim.wait()
                group.procs.remove(victim)
                job = simulator.create_batch_job(outcome="SUCCESS", queued_for=0, running_for=0)

                def of_job(r: Received, job: dict[str, Any] = job) -> bool:
                    return bool(r.json()["data"].get("id") == job["id"])

                got = receiver.wait_for(lambda rs: any(map(of_job, rs)), timeout=20 * ttl)
                found = next(r for r in got if of_job(r))
                times.append(found.at - killed_at)
                group.start()
                wait(functools.partial(new_leader, group, victim))
        finally:
            group.stop()
    return times


def new_leader(group: Group, victim: subprocess.Popen[bytes]) -> bool:
    """Whether ``group`` is led by another replica than ``victim``."""
    return group.leader().pid != victim.pid


def idle_cost(directory: pathlib.Path, replicas: int, window: float) -> float:
    """API requests per idle cycle of ``replicas`` replicas, counted at the simulator."""
    simulator = Simulator(seed=12)
    with SimulatorServer(simulator) as server, WebhookReceiver() as receiver, schema() as url:
        group = Group(config(directory, server.url, url, 15, receiver.url + "/hook"), url)
        try:
            for n in range(replicas):
                group.start()
                if n == 0:  # the first one makes the schema
                    wait(lambda: group.holder() is not None)
            wait(lambda: group.holder() is not None and group.baselined())
            time.sleep(2 * INTERVAL)  # let every replica settle into its idle pace
            before: int = simulator.stats()["total"]
            time.sleep(window)
            made: int = simulator.stats()["total"] - before
        finally:
            group.stop()
    return made / (window / INTERVAL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttls", default="2,15", help="lease TTLs to measure, seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="idle window, seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        print("failover: SIGKILL of the leader → first webhook of a job created after it")
        print(row("lease_ttl", "rounds", "median s", "max s"))
        for ttl in (float(t) for t in args.ttls.split(",")):
            times = failover(directory, ttl, args.rounds)
            print(
                row(f"{ttl:g}s", len(times), f"{statistics.median(times):.2f}", f"{max(times):.2f}")
            )
        print()
        print(f"API requests per idle cycle (poll.interval {INTERVAL:g}s, {args.window:g}s window)")
        print(row("replicas", "requests per cycle"))
        for replicas in (1, 3):
            print(row(replicas, f"{idle_cost(directory, replicas, args.window):.1f}"))


if __name__ == "__main__":
    main()
