"""`poller run` as a service: ops listener, readiness through an outage, SIGHUP, SIGTERM."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver, free_port

from .conftest import spawn, wait_until


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


class NotifySocket:
    """The AF_UNIX datagram socket systemd would own; collects what poller sends."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def has(self, line: str) -> bool:
        return any(line in m.splitlines() for m in self.drain())


@pytest.fixture
def notify(tmp_path: pathlib.Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.sock.close()


def config(api: str, store: pathlib.Path, ops: str, sinks: str, interval: str = "300ms") -> str:
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: sqlite:///{store}\n"
        f"poll:\n  interval: {interval}\n  active_interval: 200ms\n  max_backoff: 500ms\n"
        f"sinks:\n{sinks}ops:\n  listen: {ops}\nlog:\n  level: info\n  format: json\n"
    )


def test_service_lifecycle(tmp_path: pathlib.Path, notify: NotifySocket) -> None:
    """Metrics and readiness follow an API outage; SIGHUP reloads; systemd hears it all."""
    sim = Simulator(seed=11)
    ops = f"127.0.0.1:{free_port()}"
    base = f"http://{ops}"
    store = tmp_path / "p.db"
    archive = tmp_path / "archive.jsonl"
    path = tmp_path / "poller.yaml"
    log = tmp_path / "run.log"
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        hook = f"  - name: hook\n    type: http\n    url: {receiver.url}/hook\n"
        path.write_text(config(server.url, store, ops, hook))
        proc = spawn(
            ["run", "--config", str(path)],
            log,
            NOTIFY_SOCKET=str(notify.path),
            WATCHDOG_USEC="1000000",
        )
        try:
            wait_until(lambda: notify.has("READY=1"))
            assert get(base + "/healthz") == (200, "ok\n")
            wait_until(lambda: get(base + "/readyz") == (200, "ready\n"))

            job = sim.create_batch_job(outcome="SUCCESS", queued_for=0.1, running_for=0.2)
            receiver.wait_delivered(2, timeout=15)
            wait_until(
                lambda: (
                    metric(
                        get(base + "/metrics")[1], "poller_deliveries_total", outcome="delivered"
                    )
                    >= 2
                )
            )
            scraped = get(base + "/metrics")[1]
            assert metric(scraped, "poller_events_total", type="batch_job.created") == 1
            assert metric(scraped, "poller_polls_total", source="batch_jobs", outcome="ok") >= 2
            assert 'poller_outbox_oldest_pending_age_seconds{sink="hook"}' in scraped

            sim.add_fault(kind="status", status=503, count=-1, match={"path": "/v1"})
            wait_until(lambda: len(get(base + "/readyz")[1].splitlines()) == 5)
            status, body = get(base + "/readyz")
            assert status == 503
            assert sorted(line.split(":")[0] for line in body.splitlines()) == [
                "default/batch_jobs",
                "default/files",
                "default/fine_tuning_jobs",
                "default/libraries",
                "default/models",
            ]
            assert all("last successful poll" in line for line in body.splitlines())
            scraped = get(base + "/metrics")[1]
            assert metric(scraped, "poller_api_requests_total", outcome="server_error") > 0
            sim.clear_faults()
            wait_until(lambda: get(base + "/readyz") == (200, "ready\n"))

            sink = f"  - name: archive\n    type: file\n    path: {archive}\n"
            path.write_text(config(server.url, store, ops, hook + sink, interval="400ms"))
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "config_reloaded" in log.read_text())
            assert notify.has("RELOADING=1")
            upload = sim.create_file(filename="after-reload.jsonl")
            wait_until(lambda: archive.exists() and upload["id"] in archive.read_text())
            scraped = get(base + "/metrics")[1]
            assert metric(scraped, "poller_source_interval_seconds", source="files") == 0.4
            assert metric(scraped, "poller_config_reloads_total", outcome="applied") == 1

            path.write_text("poll:\n  interval: sometimes\n")
            proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "config_reload_refused" in log.read_text())
            assert proc.poll() is None and get(base + "/healthz")[0] == 200
            assert notify.has("WATCHDOG=1")
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert code == 0, log.read_text()
    assert notify.drain()[-1].startswith("STOPPING=1")
    (refused,) = [x for x in lines if x["event"] == "config_reload_refused"]
    assert "poll.interval: 'sometimes' is not a duration" in refused["reason"]
    assert lines[-1]["event"] == "stopped"
    assert {d.json()["data"]["id"] for d in receiver.delivered()} >= {job["id"]}
