"""deploy/node-receiver: a Node.js receiver verifies poller's signatures and deduplicates."""

from __future__ import annotations

import base64
import json
import os
import pathlib
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from poller.simulator import Simulator, SimulatorServer

from .conftest import ROOT, poller

SECRET = "whsec_" + base64.b64encode(b"node-receiver-secret-of-32-byte!").decode()
SAMPLE = ROOT / "deploy" / "node-receiver"


def _tools() -> tuple[str, str]:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        if os.environ.get("POLLER_REQUIRE_NODE") == "1":
            pytest.fail("Node.js and npm are required here (POLLER_REQUIRE_NODE=1)")
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    return node, npm


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pathlib.Path]:
    """A copy of the sample with its pinned dependencies installed by `npm ci`."""
    node, npm = _tools()
    copy = tmp_path_factory.mktemp("node") / "receiver"
    shutil.copytree(SAMPLE, copy, ignore=shutil.ignore_patterns("node_modules"))
    done = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=copy,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return node, copy


class NodeReceiver:
    """`node server.js` on a port of its choosing; its JSON lines, as they come."""

    def __init__(self, node: str, directory: pathlib.Path) -> None:
        env = {**os.environ, "WEBHOOK_SECRET": SECRET, "PORT": "0", "HOST": "127.0.0.1"}
        self.proc = subprocess.Popen(
            [node, "server.js"], cwd=directory, env=env, stdout=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = f"http://127.0.0.1:{self.next()['listening']}"

    def _read(self) -> None:
        for text in self.proc.stdout or ():
            self.lines.put(json.loads(text))

    def next(self) -> dict[str, Any]:
        return self.lines.get(timeout=30)


@pytest.fixture
def receiver(installed: tuple[str, pathlib.Path]) -> Iterator[NodeReceiver]:
    running = NodeReceiver(*installed)
    try:
        yield running
    finally:
        running.proc.terminate()
        assert running.proc.wait(timeout=10) == 0
        running.reader.join(5)
        if running.proc.stdout is not None:
            running.proc.stdout.close()


def test_node_receiver_verifies_and_deduplicates(
    receiver: NodeReceiver, write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path
) -> None:
    """Real deliveries verify; a replay under the same webhook-id is seen as a duplicate."""
    simulator = Simulator(seed=5)
    with SimulatorServer(simulator) as server:
        path = write(
            f"mistral:\n  base_url: {server.url}\nstore:\n  url: sqlite:///{tmp_path}/p.db\n"
            f"sinks:\n  - name: node\n    type: http\n    url: {receiver.url}/{{resource}}\n"
            f"    secret: {SECRET}\n"
        )
        assert poller("once", "--config", str(path)).returncode == 0  # the baseline
        simulator.create_file(filename="train.jsonl")
        second = poller("once", "--config", str(path))
        assert second.returncode == 0, second.stderr
        first = receiver.next()
        assert {k: first[k] for k in ("type", "path", "verified", "duplicate")} == {
            "type": "file.uploaded",
            "path": "/file",
            "verified": True,
            "duplicate": False,
        }
        assert first["data"]["filename"] == "train.jsonl"
        replay = poller("events", "replay", first["id"], "--config", str(path))
        assert replay.returncode == 0, replay.stderr
        assert poller("once", "--config", str(path)).returncode == 0
    again = receiver.next()
    assert (again["id"], again["verified"], again["duplicate"]) == (first["id"], True, True)
    body = json.dumps({"id": first["id"], "type": "file.uploaded", "data": {}})
    forged = httpx.post(
        receiver.url + "/file",
        content=body,
        headers={
            "webhook-id": first["id"],
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode(),
        },
    )
    assert forged.status_code == 401
    assert receiver.next() == {
        "id": first["id"],
        "path": "/file",
        "verified": False,
        "error": "No matching signature found",
    }
