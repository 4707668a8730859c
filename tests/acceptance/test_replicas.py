"""Processes sharing one store: `poller once` beside a running daemon sends nothing twice
on SQLite, and on PostgreSQL polls only under the workspace's lease."""

from __future__ import annotations

import base64
import collections
import json
import pathlib
import signal
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from poller.simulator import Simulator, SimulatorServer
from poller.store import Lease, all_leases
from poller.testing import WebhookReceiver

from .conftest import poller, spawn, wait_until

SECRET = "whsec_" + base64.b64encode(b"acceptance-secret-of-32-bytes!!!").decode()


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(seed=11)
    with SimulatorServer(simulator) as server:
        yield simulator, server


def config_text(api: str, store_url: str, hook: str) -> str:
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: '{store_url}'\n"
        "poll:\n  interval: 300ms\n  active_interval: 200ms\n  emit_existing: true\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
        "    concurrency: 2\n"
        "log:\n  level: debug\n  format: json\n"
    )


def test_once_beside_a_running_daemon_sends_each_delivery_once(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """Two `poller once` run while the daemon delivers (SQLite): each event arrives once, none
    goes back. (On PostgreSQL `poller once` refuses beside a replica: see below.)"""
    simulator, server = sim
    store_url = f"sqlite:///{tmp_path}/poller.db"
    files = {simulator.create_file(filename=f"f{n}.jsonl")["id"] for n in range(60)}
    with WebhookReceiver(delay=0.2) as receiver:
        path = write(config_text(server.url, store_url, receiver.url))
        daemon = spawn(["run", "--config", str(path)], tmp_path / "run.log")
        try:
            wait_until(lambda: len(receiver.requests) >= 3, limit=40)
            onces = [
                spawn(["once", "--config", str(path)], tmp_path / f"once{n}.log") for n in (1, 2)
            ]
            for once in onces:
                assert once.wait(timeout=60) == 0, (tmp_path / "once1.log").read_text()
            wait_until(
                lambda: {r.json()["data"]["id"] for r in receiver.delivered()} >= files, limit=60
            )
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
        sent = collections.Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(sent) == len(files)
    assert set(sent.values()) == {1}, "a delivery was sent twice"
    listed = poller("events", "list", "--json", "--limit", "1000", "--config", str(path))
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert len(rows) == len(files)
    assert {(r["status"], r["attempts"]) for r in rows} == {("delivered", 1)}


def ha_config(api: str, store_url: str) -> str:
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: '{store_url}'\nha:\n  lease_ttl: 2s\n"
        "poll:\n  interval: 300ms\nsinks:\n  - name: log\n    type: log\n"
        "log:\n  level: info\n  format: json\n"
    )


def only_lease(store_url: str) -> Lease:
    engine = sa.create_engine(store_url)
    try:
        [lease] = all_leases(engine)
    finally:
        engine.dispose()
    return lease


@pytest.mark.postgres
def test_once_on_a_store_no_replica_polls_takes_and_gives_back_the_lease(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    postgres_url: str,
) -> None:
    """`poller once` on PostgreSQL with no replica running polls as ever, under the
    workspace's lease, and releases it as it ends."""
    simulator, server = sim
    simulator.create_batch_job(outcome="SUCCESS")
    path = write(ha_config(server.url, postgres_url))
    first = poller("once", "--json", "--config", str(path))
    assert first.returncode == 0, first.stderr
    assert {r["mode"] for r in json.loads(first.stdout)} == {"baseline"}
    second = poller("once", "--json", "--config", str(path))
    assert second.returncode == 0, second.stderr
    assert {r["outcome"] for r in json.loads(second.stdout)} == {"ok"}
    lease = only_lease(postgres_url)
    assert (lease.workspace, lease.holder, lease.epoch) == ("default", None, 2)


@pytest.mark.postgres
def test_once_beside_a_live_replica_refuses_in_one_line(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
    postgres_url: str,
) -> None:
    """`poller once` on a store whose workspace a live replica leads polls nothing and says
    so in one line naming that replica; the replica keeps its lease."""
    _simulator, server = sim
    path = write(ha_config(server.url, postgres_url))
    log = tmp_path / "run.log"
    daemon = spawn(["run", "--config", str(path)], log)
    try:
        wait_until(lambda: '"baseline_recorded"' in log.read_text(), limit=40)
        before = only_lease(postgres_url)
        assert before.holder is not None and before.holder.endswith(f":{daemon.pid}")
        once = poller("once", "--config", str(path))
        assert once.returncode == 1
        [line] = once.stderr.strip().splitlines()
        assert line == (
            f"poller: workspace default is polled by the running replica {before.holder}; "
            "poller once polls only workspaces no replica leads: leave them to the replicas, "
            "or stop the replicas first"
        )
        assert once.stdout == ""
        after = only_lease(postgres_url)
        assert (after.holder, after.epoch) == (before.holder, before.epoch)
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
