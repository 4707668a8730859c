"""The `poller` process: once, run, SIGTERM, kill -9 and restart, demo, operator commands."""

from __future__ import annotations

import base64
import json
import pathlib
import signal
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator

import pytest
from standardwebhooks.webhooks import Webhook

from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver, free_port

from .conftest import ROOT, env, poller, spawn, wait_until

SECRET = "whsec_" + base64.b64encode(b"acceptance-secret-of-32-bytes!!!").decode()


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, SimulatorServer]]:
    simulator = Simulator(seed=3)
    with SimulatorServer(simulator) as server:
        yield simulator, server


def config_text(api: str, store: str, hook: str | None = None) -> str:
    sinks = "  - name: console\n    type: log\n"
    if hook:
        sinks += (
            f"  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
            "    retry:\n      probe_interval: 200ms\n"
        )
    return (
        f"mistral:\n  base_url: {api}\nstore:\n  url: sqlite:///{store}\n"
        "poll:\n  interval: 300ms\n  active_interval: 200ms\n"
        f"sinks:\n{sinks}log:\n  level: info\n  format: json\n"
    )


def test_once_prints_events_and_exits(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """`poller once` polls, prints log-sink lines on stdout, exits 0; the second run adds news."""
    simulator, server = sim
    path = write(config_text(server.url, str(tmp_path / "p.db")))
    first = poller("once", "--config", str(path))
    assert first.returncode == 0, first.stderr
    simulator.create_file(filename="new.jsonl")
    second = poller("once", "--config", str(path))
    assert second.returncode == 0, second.stderr
    lines = [json.loads(x) for x in second.stdout.splitlines()]
    assert [(x["type"], x["data"]["filename"]) for x in lines] == [("file.uploaded", "new.jsonl")]
    assert "OUTCOME" in second.stderr and "OUTCOME" not in second.stdout


def test_once_exits_non_zero_when_a_poll_fails(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """`poller once` against an API refusing its key (401) exits 1 and says which polls failed."""
    with SimulatorServer(Simulator(seed=3, api_key="sk-right")) as server:
        text = config_text(server.url, str(tmp_path / "p.db"))
        path = write(text.replace("mistral:\n", "mistral:\n  api_key: sk-wrong\n", 1))
        result = poller("once", "--json", "--config", str(path))
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert {r["outcome"] for r in rows} == {"error"}
    assert "5 poll(s) failed: default/batch_jobs" in result.stderr


def test_sigterm_stops_cleanly(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """One SIGTERM ends `poller run` (webhook, ops listener, events delivered) with exit 0,
    and `stopped` is the last line it writes."""
    simulator, server = sim
    with WebhookReceiver() as receiver:
        text = config_text(server.url, str(tmp_path / "p.db"), receiver.url)
        path = write(text + f"ops:\n  listen: 127.0.0.1:{free_port()}\n")
        log = tmp_path / "run.log"
        proc = spawn(["run", "--config", str(path)], log)
        wait_until(
            lambda: any(
                '"baseline_recorded"' in line and '"files"' in line
                for line in log.read_text().splitlines()
            )
        )
        upload = simulator.create_file(filename="before-stop.jsonl")
        wait_until(
            lambda: any(r.json()["data"]["id"] == upload["id"] for r in receiver.delivered())
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    lines = log.read_text().splitlines()
    # poller's lines, the libraries' and the log sink's: each one a JSON object
    assert all(isinstance(json.loads(line), dict) for line in lines), lines
    assert json.loads(lines[-1])["event"] == "stopped"


def test_kill_9_and_restart_lose_nothing_and_invent_nothing(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """kill -9 mid-stream then restart: every event arrives, and no transition under two ids."""
    simulator, server = sim
    jobs = 40
    with WebhookReceiver() as receiver:
        path = write(config_text(server.url, str(tmp_path / "p.db"), receiver.url + "/hook"))
        log = tmp_path / "run.log"
        proc = spawn(["run", "--config", str(path)], log)
        wait_until(lambda: "baseline_recorded" in log.read_text())
        for n in range(jobs):
            simulator.create_batch_job(
                outcome="SUCCESS", queued_for=0.1 * (n % 5), running_for=0.2 + 0.05 * n
            )
        wait_until(lambda: len(receiver.delivered()) >= 10)
        proc.kill()
        proc.wait(timeout=10)
        for _ in range(5):  # things that happen while poller is down
            simulator.create_batch_job(outcome="FAILED", queued_for=0, running_for=0.1)
        proc = spawn(["run", "--config", str(path)], log)
        try:
            wait_until(
                lambda: (
                    {
                        (r.json()["type"], r.json()["data"]["id"])
                        for r in receiver.delivered()
                        if r.json()["type"].startswith("batch_job.")
                    }.__len__()
                    >= 2 * (jobs + 5)
                ),
                limit=40,
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        ids_per_transition: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in receiver.delivered():
            doc = Webhook(SECRET).verify(r.body, r.headers)
            ids_per_transition[(doc["type"], doc["data"]["id"])].add(doc["id"])
    assert all(len(ids) == 1 for ids in ids_per_transition.values()), "a transition had two ids"
    created = {k[1] for k in ids_per_transition if k[0] == "batch_job.created"}
    finished = {
        k[1] for k in ids_per_transition if k[0] in ("batch_job.succeeded", "batch_job.failed")
    }
    assert len(created) == jobs + 5 and finished == created


def test_operator_commands_over_a_live_store(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """status, events list/show/replay and sinks list/enable work on the store."""
    simulator, server = sim
    with WebhookReceiver(lambda _r: 410) as receiver:
        path = write(config_text(server.url, str(tmp_path / "p.db"), receiver.url))
        assert poller("once", "--config", str(path)).returncode == 0
        simulator.create_file(filename="x.jsonl")
        assert poller("once", "--config", str(path)).returncode == 0
        sinks = json.loads(poller("sinks", "list", "--json", "--config", str(path)).stdout)
        hook = next(s for s in sinks if s["sink"] == "hook")
        assert not hook["enabled"] and "410" in hook["disabled_reason"]
        events = json.loads(
            poller("events", "list", "--json", "--sink", "hook", "--config", str(path)).stdout
        )
        (event,) = events
        assert event["type"] == "file.uploaded" and event["status"] == "failed"
        shown = json.loads(
            poller("events", "show", event["id"], "--json", "--config", str(path)).stdout
        )
        assert shown["event"]["data"]["filename"] == "x.jsonl"
        # tables write their moments in UTC with the zone: the same moment as the JSON
        stamp = event["timestamp"]
        listed = poller("events", "list", "--sink", "hook", "--config", str(path)).stdout
        assert f"{stamp[:10]} {stamp[11:19]}Z" in listed
        attempted = shown["deliveries"][0]["log"][0]["attempted_at"]
        detail = poller("events", "show", event["id"], "--config", str(path)).stdout
        assert f"{attempted[:10]} {attempted[11:19]}Z" in detail
        assert poller("sinks", "enable", "hook", "--config", str(path)).returncode == 0
        replay = poller("events", "replay", event["id"], "--config", str(path))
        assert replay.returncode == 0 and "queued 2 deliveries" in replay.stdout
        status = json.loads(poller("status", "--json", "--config", str(path)).stdout)
        assert {s["source"] for s in status["sources"]} == {
            "batch_jobs",
            "fine_tuning_jobs",
            "files",
            "models",
            "libraries",
        }
        unknown = poller("events", "show", "evt_nope", "--config", str(path))
        assert unknown.returncode == 1 and "evt_nope" in unknown.stderr


def test_demo_shows_events() -> None:
    """`poller demo` prints events from the built-in simulator without any configuration
    (batch jobs and library documents moving), and `stopped` is the last line it logs."""
    result = poller("demo", "--duration", "12", timeout=60)
    assert result.returncode == 0, result.stderr
    types = {json.loads(x)["type"] for x in result.stdout.splitlines() if x.startswith("{")}
    assert {"batch_job.created", "library_document.uploaded"} <= types and len(types) >= 3
    assert json.loads(result.stderr.splitlines()[-1])["event"] == "stopped"


def test_the_demos_leave_nothing_untracked(
    sim: tuple[Simulator, SimulatorServer], tmp_path: pathlib.Path
) -> None:
    """`poller demo` and README's two-process demo (`poller run --config config/demo.yaml`),
    run in a checkout, leave `git status` clean: what they write there is ignored."""
    _simulator, server = sim
    checkout = tmp_path / "checkout"
    (checkout / "config").mkdir(parents=True)
    for name in (".gitignore", "config/demo.yaml"):
        (checkout / name).write_text((ROOT / name).read_text())

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=checkout,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "a checkout")
    command = [sys.executable, "-m", "poller"]
    demo = subprocess.run(
        [*command, "demo", "--duration", "3"], cwd=checkout, env=env(), capture_output=True
    )
    assert demo.returncode == 0, demo.stderr
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [*command, "run", "--config", "config/demo.yaml"],
            cwd=checkout,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env(POLLER_DEMO_API=server.url, POLLER_DEMO_OPS=f"127.0.0.1:{free_port()}"),
        )
    wait_until(lambda: "baseline_recorded" in log.read_text() or daemon.poll() is not None)
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(timeout=20) == 0, log.read_text()
    assert (checkout / "poller-demo.db").exists()  # the store it wrote, beside its lock
    assert git("status", "--porcelain", "--untracked-files=all") == ""


def test_simulate_serves_the_api(tmp_path: pathlib.Path) -> None:
    """`poller simulate` serves the Mistral API and its control API on the given port."""
    import httpx

    from poller.testing import free_port, wait_port

    port = free_port()
    proc = spawn(["simulate", "--port", str(port), "--api-key", "sk-sim"], tmp_path / "sim.log")
    try:
        wait_port(port)
        created = httpx.post(f"http://127.0.0.1:{port}/_sim/batch_jobs", json={}).json()
        listed = httpx.get(
            f"http://127.0.0.1:{port}/v1/batch/jobs", headers={"Authorization": "Bearer sk-sim"}
        )
        refused = httpx.get(f"http://127.0.0.1:{port}/v1/batch/jobs")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert [j["id"] for j in listed.json()["data"]] == [created["id"]]
    assert refused.status_code == 401


def test_kill_9_during_a_delivery_burst_loses_nothing(
    sim: tuple[Simulator, SimulatorServer],
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> None:
    """kill -9 while deliveries are in flight: after restart every event arrives, same ids."""
    simulator, server = sim
    files = {simulator.create_file(filename=f"f{n}.jsonl")["id"] for n in range(60)}
    with WebhookReceiver(delay=0.03) as receiver:
        text = config_text(server.url, str(tmp_path / "p.db"), receiver.url)
        path = write(text.replace("poll:\n", "poll:\n  emit_existing: true\n"))
        log = tmp_path / "run.log"
        proc = spawn(["run", "--config", str(path)], log)
        wait_until(lambda: len(receiver.requests) >= 15)
        proc.kill()
        proc.wait(timeout=10)
        first = {r.headers["webhook-id"] for r in receiver.delivered()}
        proc = spawn(["run", "--config", str(path)], log)
        try:
            wait_until(
                lambda: {r.json()["data"]["id"] for r in receiver.delivered()} >= files, limit=40
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
        ids: dict[str, set[str]] = defaultdict(set)
        for r in receiver.delivered():
            doc = Webhook(SECRET).verify(r.body, r.headers)
            ids[doc["data"]["id"]].add(doc["id"])
    assert set(ids) == files
    assert all(len(v) == 1 for v in ids.values()), "an event changed id across the crash"
    assert first < {i for v in ids.values() for i in v}


def test_operator_commands_do_not_create_a_store(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """`poller status` before the daemon ever ran says so, and creates no store file."""
    store = tmp_path / "state" / "p.db"
    path = write(config_text("http://127.0.0.1:9/v1", str(store)))
    result = poller("status", "--config", str(path))
    assert result.returncode == 2 and "start the daemon first" in result.stderr
    assert not store.exists()
