"""How soon a batch job created through the proxy reaches a webhook, beside polling.

Starts the built-in simulator (`poller simulate`) and the daemon (`poller run`: the
proxy, batch-job polling every ``--interval``, one signed webhook sink) in their own
processes, and a webhook receiver in this one, all on 127.0.0.1. Then, alternating:

- **hinted**: ``POST /v1/batch/jobs`` through the proxy; measured from the moment the
  answer is back to the moment the receiver holds ``batch_job.created``;
- **polled**: the same call straight to the simulator; measured the same way, so the
  event waits for the next poll.

    python -m bench.hints [--jobs 30] [--interval 2]

The run stops by itself; every request goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import pathlib
import sqlite3
import tempfile
import time

import httpx

from bench.common import percentile, process, row, simulator
from poller.testing import WebhookReceiver, free_port

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-of-thirty-two-b").decode()
KEY = "bench-workspace-key"
JOB = {
    "model": "mistral-small-latest",
    "endpoint": "/v1/chat/completions",
    "requests": [{"custom_id": "1", "body": {"messages": [{"role": "user", "content": "hi"}]}}],
}


def config(folder: pathlib.Path, sim_port: int, proxy_port: int, hook: str, every: float) -> str:
    return (
        f"mistral:\n  base_url: http://127.0.0.1:{sim_port}/v1\n  api_key: {KEY}\n"
        f"store:\n  url: sqlite:///{folder / 'bench.db'}\n"
        f"poll:\n  interval: {every}s\n  active_interval: {every}s\n"
        "sources:\n  batch_jobs: true\n  fine_tuning_jobs: false\n  files: false\n"
        "  models: false\n"
        f"sinks:\n  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
        "    events: [batch_job.created]\n"
        f"proxy:\n  listen: 127.0.0.1:{proxy_port}\nlog:\n  level: warning\n"
    )


def baselined(db: pathlib.Path, timeout: float = 30.0) -> None:
    """Wait for the first poll: what exists before it is the baseline, never announced."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(db) as conn:
                if conn.execute("select count(*) from source_state where baselined").fetchone()[0]:
                    return
        except sqlite3.OperationalError:
            pass  # the daemon has not created its tables yet
        time.sleep(0.05)
    raise TimeoutError("the daemon took no baseline")


def created(receiver: WebhookReceiver, job_id: str, timeout: float) -> float:
    """When the receiver got ``batch_job.created`` for ``job_id`` (unix seconds)."""
    found = receiver.wait_for(
        lambda rs: any(r.json()["data"]["id"] == job_id for r in rs), timeout=timeout
    )
    return next(r.at for r in found if r.json()["data"]["id"] == job_id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=30, help="jobs created each way")
    parser.add_argument("--interval", type=float, default=2.0, help="poll interval, seconds")
    args = parser.parse_args()
    sim_port, proxy_port = free_port(), free_port()
    took: dict[str, list[float]] = {"hinted": [], "polled": []}
    with (
        tempfile.TemporaryDirectory(prefix="poller-bench-") as tmp,
        WebhookReceiver(validate=False) as receiver,  # time poller, not schema checks
        simulator(sim_port),
    ):
        folder = pathlib.Path(tmp)
        path = folder / "poller.yaml"
        path.write_text(config(folder, sim_port, proxy_port, receiver.url, args.interval))
        with (
            process(["-m", "poller", "run", "--config", str(path)], proxy_port),
            httpx.Client(headers={"Authorization": f"Bearer {KEY}"}) as http,
        ):
            baselined(folder / "bench.db")
            targets = {
                "hinted": f"http://127.0.0.1:{proxy_port}/v1/batch/jobs",
                "polled": f"http://127.0.0.1:{sim_port}/v1/batch/jobs",
            }
            for _ in range(args.jobs):
                for name, url in targets.items():
                    answer = http.post(url, json=JOB)
                    answered = time.time()
                    answer.raise_for_status()
                    at = created(receiver, answer.json()["id"], timeout=args.interval * 3 + 10)
                    took[name].append(at - answered)
    print(
        f"batch_job.created, answer → webhook; {args.jobs} jobs each way; "
        f"polls {args.interval:g} s apart"
    )
    print(row("path", "p50", "p95", "max"))
    print(row("---", "---", "---", "---"))
    for name, values in took.items():
        figures = [percentile(values, 50), percentile(values, 95), max(values)]
        print(row(name, *(f"{v * 1000:.1f} ms" for v in figures)))


if __name__ == "__main__":
    main()
