"""How long `poller run` lives on after it logged `stopped`.

Starts the built-in simulator (`poller simulate --activity`) and a webhook receiver, then,
``--runs`` times: starts the daemon (every source, one signed webhook sink, the log sink,
the ops listener), waits until it delivered an event, sends it one SIGTERM, and measures
from the moment its `stopped` line is read to the moment the process has exited. Also
checks that `stopped` was its last line.

    python -m bench.shutdown [--runs 10]

The run stops by itself; every request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from bench.common import ROOT, percentile, process, row
from poller.testing import WebhookReceiver, free_port

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-of-thirty-two-b").decode()


def config(folder: pathlib.Path, sim_port: int, hook: str) -> str:
    return (
        f"mistral:\n  base_url: http://127.0.0.1:{sim_port}/v1\n"
        f"store:\n  url: sqlite:///{folder / 'bench.db'}\n"
        "poll:\n  interval: 1s\n  active_interval: 500ms\n  emit_existing: true\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
        "  - name: console\n    type: log\n"
        f"ops:\n  listen: 127.0.0.1:{free_port()}\nlog:\n  format: json\n"
    )


def one_run(path: pathlib.Path, receiver: WebhookReceiver) -> float:
    """Seconds from reading `stopped` to the daemon's exit."""
    receiver.requests.clear()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "poller", "run", "--config", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    assert proc.stdout is not None
    try:
        receiver.wait_for(lambda rs: len(rs) > 0, timeout=30)
        proc.send_signal(signal.SIGTERM)
        last = ""
        read_stopped = None
        for line in proc.stdout:
            last = line.decode()
            if json.loads(last).get("event") == "stopped":
                read_stopped = time.monotonic()
        proc.wait(timeout=30)
        exited = time.monotonic()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if read_stopped is None or json.loads(last).get("event") != "stopped":
        raise SystemExit(f"`stopped` was not the last line: {last.strip()}")
    return exited - read_stopped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=10, help="daemons started and stopped")
    args = parser.parse_args()
    sim_port = free_port()
    took = []
    with (
        tempfile.TemporaryDirectory(prefix="poller-bench-") as tmp,
        WebhookReceiver(validate=False) as receiver,
        process(
            [
                "-m",
                "poller",
                "simulate",
                "--port",
                str(sim_port),
                "--activity",
                "--scenario",
                "demo",
            ],
            sim_port,
        ),
    ):
        folder = pathlib.Path(tmp)
        path = folder / "poller.yaml"
        path.write_text(config(folder, sim_port, receiver.url))
        for _ in range(args.runs):
            took.append(one_run(path, receiver))
    print(f"`stopped` read → process exited; {args.runs} runs, one SIGTERM each")
    print(row("p50", "p95", "max"))
    print(row("---", "---", "---"))
    figures = [percentile(took, 50), percentile(took, 95), max(took)]
    print(row(*(f"{v * 1000:.0f} ms" for v in figures)))


if __name__ == "__main__":
    main()
