"""Replicas of `poller run` on one PostgreSQL schema when one freezes, is cut off from the
store or runs on a clock 30 s off, and when a newer release changes the schema under them.

Lease and claim timeouts are 3 s; every wait is on a condition (the receiver's requests,
the store's rows, the replicas' logs), except the 25 s a fault lasts, which is the scenario.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import datetime as dt
import os
import pathlib
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from poller.simulator import Simulator, SimulatorServer
from poller.testing import Received, WebhookReceiver

from .conftest import spawn, wait_until
from .netsplit import Forwarder
from .replicas import Replicas
from .test_ha import stored_event_ids

SECRET = "whsec_" + base64.b64encode(b"replica-faults-secret-32-bytes!!").decode()
FAULT = 25.0
"""Seconds a replica stays frozen or cut off."""


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(seed=15)
    with SimulatorServer(simulator) as server:
        yield simulator, server


def config_text(api: str, hook: str, *, retry: str = "") -> str:
    """Replicas with a 3 s lease and claim timeout; ``$STORE_URL`` and ``$REPLICA`` (sent
    in an ``x-replica`` header) set per process."""
    return (
        f"mistral:\n  base_url: {api}\n"
        "store:\n  url: ${STORE_URL}\n  claim_timeout: 3s\n"
        "ha:\n  lease_ttl: 3s\n"
        "poll:\n  interval: 300ms\n  active_interval: 200ms\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
        "    concurrency: 2\n    headers:\n      x-replica: ${REPLICA}\n"
        f"    retry:\n      probe_interval: 200ms\n{retry}"
        "log:\n  level: info\n  format: json\n"
    )


class Fleet(Replicas):
    """Replicas on one config, each named (``$REPLICA``) and with a store URL of its own."""

    def __init__(self, config: pathlib.Path, logs: pathlib.Path, store_url: str) -> None:
        super().__init__(config, logs, store_url)
        self.store_url = store_url

    def named(self, name: str, *, store: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        """Start replica ``name``; wait until it runs (the first one: until it leads and has
        taken every source's baseline, so that what is made next is news)."""
        log = self.logs / f"replica-{len(self.procs)}.log"
        proc = spawn(
            ["run", "--config", str(self.config)],
            log,
            STORE_URL=store or self.store_url,
            REPLICA=name,
            **env,
        )
        self.procs.append(proc)
        if len(self.procs) == 1:
            wait_until(lambda: self.lease() is not None and self.baselined(), limit=30)
        wait_until(lambda: any(x["event"] == "started" for x in self.lines(proc)), limit=30)
        return proc

    def logged(self, proc: subprocess.Popen[bytes], event: str, after: int = 0) -> bool:
        return any(x["event"] == event for x in self.lines(proc, after))


@pytest.fixture
def fleet(
    sim: tuple[Simulator, SimulatorServer],
    postgres_url: str,
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> Iterator[Callable[..., Fleet]]:
    made: list[Fleet] = []

    def make(hook: str, **options: str) -> Fleet:
        group = Fleet(write(config_text(sim[1].url, hook, **options)), tmp_path, postgres_url)
        made.append(group)
        return group

    yield make
    for group in made:
        group.stop()


@dataclasses.dataclass
class Call:
    """One request as the slow receiver saw it: who sent which event, when it came and went."""

    replica: str
    event_id: str
    arrived: float
    answered: float | None = None


class Slow:
    """A receiver's answer that takes 3 s, noting every call (``time.time()`` throughout)."""

    def __init__(self, seconds: float = 3.0) -> None:
        self.seconds = seconds
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def __call__(self, request: Received) -> int:
        call = Call(request.headers["x-replica"], request.headers["webhook-id"], time.time())
        with self._lock:
            self.calls.append(call)
        time.sleep(self.seconds)  # the receiver is slow: this is its answer time
        call.answered = time.time()
        return 200

    def on_the_wire(self, replica: str) -> list[str]:
        with self._lock:
            return [c.event_id for c in self.calls if c.replica == replica and not c.answered]

    def settled(self) -> bool:
        with self._lock:
            return all(c.answered for c in self.calls)

    def during(self, replica: str, start: float, end: float) -> set[str]:
        """What ``replica`` had on the wire at some moment between ``start`` and ``end``."""
        with self._lock:
            return {
                c.event_id
                for c in self.calls
                if c.replica == replica and c.arrived < end and (c.answered or end) > start
            }

    def sent(self) -> collections.Counter[str]:
        with self._lock:
            return collections.Counter(c.event_id for c in self.calls)


def waiting_claims(group: Fleet, on_the_wire: list[str]) -> int:
    """Deliveries claimed together with those on the wire and not sent yet: held, waiting."""
    if not on_the_wire:
        return 0
    query = sa.text(
        "select count(*) from deliveries d join events e on e.seq = d.event_seq "
        "where d.status = 'pending' and e.id <> all(:ids) and d.claim_token in ("
        "  select d2.claim_token from deliveries d2 join events e2 on e2.seq = d2.event_seq"
        "  where e2.id = any(:ids))"
    )
    with group.engine.connect() as conn:
        return int(conn.scalar(query, {"ids": on_the_wire}) or 0)


def pending(group: Fleet) -> int:
    with group.engine.connect() as conn:
        query = sa.text("select count(*) from deliveries where status = 'pending'")
        return int(conn.scalar(query) or 0)


def dead(group: Fleet) -> int:
    with group.engine.connect() as conn:
        return int(conn.scalar(sa.text("select count(*) from deliveries where status = 'dead'")))


Fault = tuple[Callable[[], None], Callable[[], None]]
"""How a fault begins and how it ends."""


def fault_run(
    sim: tuple[Simulator, SimulatorServer],
    fleet: Callable[..., Fleet],
    fault: Callable[[subprocess.Popen[bytes]], Fault],
    *,
    store: str | None = None,
) -> None:
    """Two replicas deliver 12 events to a receiver answering in 3 s; ``b`` (on ``store``),
    while it has an attempt on the wire and more claimed, suffers ``fault`` for 25 s. Every
    event arrives, and only what ``b`` had on the wire during the fault arrives twice."""
    simulator, _server = sim
    slow = Slow()
    with WebhookReceiver(slow) as receiver:
        group = fleet(receiver.url)
        group.named("a")
        b = group.named("b", store=store)
        for n in range(12):
            simulator.create_file(filename=f"f{n}.jsonl")
        wait_until(lambda: waiting_claims(group, slow.on_the_wire("b")) > 0, limit=30)
        begin, end = fault(b)
        mark = len(group.log_of(b).read_text())
        began = time.time()
        begin()
        try:
            wait_until(lambda: len(stored_event_ids(group)) == 12, limit=30)
            wait_until(
                lambda: stored_event_ids(group) <= {r.json()["id"] for r in receiver.delivered()},
                limit=60,
            )
            time.sleep(max(0.0, began + FAULT - time.time()))  # the fault lasts its 25 s
        finally:
            ended = time.time()
            end()
        # b wakes: the results of its attempts that others sent meanwhile are refused
        wait_until(lambda: group.logged(b, "delivery_claim_lost", mark), limit=30)
        group.stop()
        wait_until(slow.settled, limit=10)
        stored = stored_event_ids(group)
        delivered = {r.json()["id"] for r in receiver.delivered()}
    sent = slow.sent()
    twice = {i for i, n in sent.items() if n > 1}
    unavoidable = slow.during("b", began, ended)
    print(
        f"\n{len(stored)} events, {sum(sent.values())} requests, {len(twice)} sent twice, "
        f"{len(unavoidable)} on b's wire during the fault"
    )
    assert stored <= delivered, "an event was not delivered"
    assert twice <= unavoidable, (
        "sent twice though b had no attempt of them on the wire during the fault: "
        f"{sorted(twice - unavoidable)}"
    )
    assert max(sent.values()) <= 2


@pytest.mark.slow
@pytest.mark.postgres
def test_a_replica_frozen_for_25s_sends_nothing_another_sent(
    sim: tuple[Simulator, SimulatorServer], fleet: Callable[..., Fleet]
) -> None:
    """SIGSTOP a replica for 25 s while it holds claims: it wakes and gives them back; only
    the attempts it had on the wire when it froze go out twice."""

    def freeze(proc: subprocess.Popen[bytes]) -> Fault:
        return lambda: proc.send_signal(signal.SIGSTOP), lambda: proc.send_signal(signal.SIGCONT)

    fault_run(sim, fleet, freeze)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_replica_cut_off_from_the_store_for_25s_sends_nothing_another_sent(
    sim: tuple[Simulator, SimulatorServer], fleet: Callable[..., Fleet], postgres_url: str
) -> None:
    """A replica whose store connections go dead for 25 s sends nothing another sent, then or
    after: only attempts on its wire during the partition (begun before it could know) go
    out twice."""
    with Forwarder() as forwarder:
        fault_run(
            sim,
            fleet,
            lambda _proc: (forwarder.cut, forwarder.heal),
            store=forwarder.url(postgres_url),
        )


def skewed(offset: str) -> dict[str, str]:
    """The environment that runs poller on a clock ``offset`` off (libfaketime, found through
    its ``faketime`` command), its monotonic clock left alone."""
    if shutil.which("faketime") is None:
        if os.environ.get("POLLER_REQUIRE_FAKETIME") == "1":
            pytest.fail("faketime is required here (POLLER_REQUIRE_FAKETIME=1)")
        pytest.skip("faketime is not installed (Debian package faketime)")
    shown = subprocess.run(
        ["faketime", "-f", "+0s", "env"], capture_output=True, text=True, check=True
    ).stdout
    (preload,) = [x.split("=", 1)[1] for x in shown.splitlines() if x.startswith("LD_PRELOAD=")]
    return {"LD_PRELOAD": preload, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def started_at(group: Fleet, proc: subprocess.Popen[bytes]) -> float:
    """When ``proc`` says it started, by its own clock (unix seconds)."""
    (line,) = [x for x in group.lines(proc) if x["event"] == "started"]
    return dt.datetime.fromisoformat(line["timestamp"]).timestamp()


def refuse_first(seen: set[str], lock: threading.Lock) -> Callable[[Received], int]:
    """Answer 422 to the first request of every event, 200 to the next."""

    def respond(request: Received) -> int:
        with lock:
            first = request.headers["webhook-id"] not in seen
            seen.add(request.headers["webhook-id"])
        time.sleep(0.2)  # a receiver that takes its time, so both replicas get work
        return 422 if first else 200

    return respond


@pytest.mark.postgres
def test_replicas_with_clocks_a_minute_apart_send_each_event_once(
    sim: tuple[Simulator, SimulatorServer], fleet: Callable[..., Fleet]
) -> None:
    """One replica 30 s behind (leading), one 30 s ahead: every event refused once, then
    delivered once; none sent a third time, none marked dead (max_age 50 s)."""
    behind_env, ahead_env = skewed("-30s"), skewed("+30s")
    simulator, _server = sim
    seen: set[str] = set()
    with WebhookReceiver(refuse_first(seen, threading.Lock())) as receiver:
        retry = "      schedule: [200ms, 200ms, 200ms]\n      max_age: 50s\n"
        group = fleet(receiver.url, retry=retry)
        since = time.time()
        behind = group.named("behind", **behind_env)
        ahead = group.named("ahead", **ahead_env)
        now = time.time()
        assert since - 31 < started_at(group, behind) < now - 29, "its clock is not 30 s behind"
        assert since + 29 < started_at(group, ahead) < now + 31, "its clock is not 30 s ahead"
        assert group.leader() is behind
        for n in range(10):
            simulator.create_file(filename=f"f{n}.jsonl")
        wait_until(lambda: len(stored_event_ids(group)) == 10, limit=30)
        wait_until(lambda: pending(group) == 0, limit=60)
        stored = stored_event_ids(group)
        group.stop()
        requests = list(receiver.requests)
    answers: dict[str, list[int]] = collections.defaultdict(list)
    for r in requests:
        answers[r.headers["webhook-id"]].append(r.status)
    assert {i: a for i, a in answers.items() if a != [422, 200]} == {}, (
        "not refused once then delivered once"
    )
    assert set(answers) == stored
    assert {r.headers["x-replica"] for r in requests} == {"behind", "ahead"}
    assert dead(group) == 0


@pytest.mark.postgres
def test_a_newer_schema_stops_the_daemon_sending(
    sim: tuple[Simulator, SimulatorServer], fleet: Callable[..., Fleet]
) -> None:
    """A newer release migrates the store under a running daemon: within a third of the
    claim timeout it starts nothing more, lets its attempts finish, and exits 2 with one
    line saying why."""
    simulator, _server = sim
    arrived, release = threading.Event(), threading.Event()

    def hold(_request: Received) -> int:
        arrived.set()
        release.wait(30)
        return 200

    with WebhookReceiver(hold) as receiver:
        group = fleet(receiver.url)
        daemon = group.named("old")
        for n in range(3):
            simulator.create_file(filename=f"f{n}.jsonl")
        assert arrived.wait(30)
        with group.engine.begin() as conn:
            conn.execute(sa.text("update alembic_version set version_num = '9999'"))
        try:
            wait_until(lambda: group.logged(daemon, "store_schema_newer"), limit=20)
        finally:
            release.set()
        assert daemon.wait(timeout=30) == 2
        requests = list(receiver.requests)
    (seen,) = [x for x in group.lines(daemon) if x["event"] == "store_schema_newer"]
    seen_at = dt.datetime.fromisoformat(seen["timestamp"]).timestamp()
    assert requests and all(r.at < seen_at for r in requests), "it sent after it saw the schema"
    assert pending(group) == 3 - len(requests)
    last = group.log_of(daemon).read_text().splitlines()[-1]
    assert last.startswith("poller: store error: the store has schema revision 9999, which")
