"""What the recording proxy adds: latency, time to first streamed byte, throughput.

Starts the built-in simulator (`poller simulate`) and the daemon with its proxy
(`poller run`, polling off, events recorded into SQLite and delivered to a file sink),
each in its own process on 127.0.0.1, then calls the simulator directly and through the
proxy in the same run, alternating, and prints the figures:

    python -m bench.proxy [--requests 300] [--throughput 2000] [--concurrency 16] [--deliver]

Latency is measured one call at a time over a kept-alive connection; throughput with
``--concurrency`` calls in flight. Every request goes to 127.0.0.1 only and the run
stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from poller.testing import free_port

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = "bench-workspace-key"
"""The workspace's key: calls carrying it are recorded (any other key records nothing)."""
HEADERS = {"Authorization": f"Bearer {KEY}"}
CHAT = {
    "model": "mistral-small-latest",
    "messages": [{"role": "user", "content": "Benchmark me, please."}],
}


@contextmanager
def process(args: list[str], log: pathlib.Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "poller", *args], stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=ROOT)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: pathlib.Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: the process ended:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up:\n{log.read_text()[-2000:]}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def plain(client: httpx.AsyncClient, url: str) -> float:
    start = time.perf_counter()
    answer = await client.post(f"{url}/v1/chat/completions", json=CHAT)
    assert answer.status_code == 200, answer.text
    return time.perf_counter() - start


async def streamed(client: httpx.AsyncClient, url: str) -> tuple[float, float]:
    """(time to the first body byte, time to the end) of a streamed completion."""
    start = time.perf_counter()
    first = 0.0
    body = {**CHAT, "stream": True}
    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as answer:
        assert answer.status_code == 200
        async for _chunk in answer.aiter_raw():
            if not first:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start


async def latency(targets: dict[str, str], n: int) -> dict[str, dict[str, list[float]]]:
    found: dict[str, dict[str, list[float]]] = {
        name: {"plain": [], "ttfb": [], "stream": []} for name in targets
    }
    clients = {name: httpx.AsyncClient(timeout=30, headers=HEADERS) for name in targets}
    try:
        for name, url in targets.items():  # warm up: connections, caches
            for _ in range(50):
                await plain(clients[name], url)
                await streamed(clients[name], url)
        for _ in range(n):
            for name, url in targets.items():  # alternate, so drift hits both alike
                found[name]["plain"].append(await plain(clients[name], url))
                first, total = await streamed(clients[name], url)
                found[name]["ttfb"].append(first)
                found[name]["stream"].append(total)
    finally:
        for client in clients.values():
            await client.aclose()
    return found


async def throughput(url: str, total: int, concurrency: int) -> float:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=HEADERS) as client:
        left = iter(range(total))

        async def worker() -> None:
            for _ in left:
                await plain(client, url)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def report(found: dict[str, dict[str, list[float]]], rates: dict[str, float], args: Any) -> None:
    direct, proxied = found["direct"], found["proxy"]
    mode = "delivered to an fsync'ed file sink" if args.deliver else "recorded, not delivered"
    print(f"{args.requests} sequential calls of each kind per target, alternating;")
    print(f"proxy events {mode}")
    print(f"throughput: {args.rounds} alternating rounds of {args.throughput} calls, "
          f"{args.concurrency} in flight (medians)\n")  # fmt: skip
    print(f"{'measure':<28}{'direct':>10}{'proxy':>10}{'added':>10}")
    for label, key in (("plain p50 (ms)", "plain"), ("stream end p50 (ms)", "stream"),
                       ("first byte p50 (ms)", "ttfb")):  # fmt: skip
        d, p = statistics.median(direct[key]), statistics.median(proxied[key])
        print(f"{label:<28}{ms(d):>10}{ms(p):>10}{ms(p - d):>10}")
    for label, key in (("plain p99 (ms)", "plain"), ("stream end p99 (ms)", "stream"),
                       ("first byte p99 (ms)", "ttfb")):  # fmt: skip
        d, p = pct(direct[key], 99), pct(proxied[key], 99)
        print(f"{label:<28}{ms(d):>10}{ms(p):>10}{ms(p - d):>10}")
    ratio = rates["proxy"] / rates["direct"]
    print(f"{'throughput (calls/s)':<28}{rates['direct']:>10.0f}{rates['proxy']:>10.0f}"
          f"{ratio:>9.0%} of direct")  # fmt: skip
    added = statistics.median(proxied["plain"]) - statistics.median(direct["plain"])
    ttfb = statistics.median(proxied["ttfb"]) - statistics.median(direct["ttfb"])
    print("\ntargets: p50 added < 2 ms, first byte within 5 ms, throughput >= 80 %")
    print(f"  p50 added {ms(added)} ms: {'met' if added < 0.002 else 'MISSED'}")
    print(f"  first byte +{ms(ttfb)} ms: {'met' if ttfb < 0.005 else 'MISSED'}")
    print(f"  throughput {ratio:.0%}: {'met' if ratio >= 0.8 else 'MISSED'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=500, help="sequential calls per kind")
    parser.add_argument("--throughput", type=int, default=2000, help="calls in the rate run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="alternating throughput rounds")
    parser.add_argument(
        "--deliver",
        action="store_true",
        help="also deliver every event to a file sink (fsync'ed) in the same process",
    )
    args = parser.parse_args()
    # without --deliver the events are recorded in the outbox but routed to no sink
    routed = "" if args.deliver else "    events: [batch_job.*]\n"
    with tempfile.TemporaryDirectory(prefix="poller-bench-") as tmp:
        folder = pathlib.Path(tmp)
        sim_port, proxy_port = free_port(), free_port()
        sim_url, proxy_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{proxy_port}"
        config = folder / "poller.yaml"
        config.write_text(
            f"mistral:\n  base_url: {sim_url}/v1\n  api_key: {KEY}\n"
            f"store:\n  url: sqlite:///{folder / 'bench.db'}\n"
            "sources:\n  batch_jobs: false\n  fine_tuning_jobs: false\n  files: false\n"
            "  models: false\n"
            f"sinks:\n  - name: jsonl\n    type: file\n{routed}"
            f"    path: {folder / 'events.jsonl'}\n"
            f"proxy:\n  listen: 127.0.0.1:{proxy_port}\nlog:\n  level: warning\n"
        )
        with (
            process(["simulate", "--port", str(sim_port)], folder / "sim.log") as sim,
            process(["run", "--config", str(config)], folder / "run.log") as daemon,
        ):
            wait_ready(sim_url, sim, folder / "sim.log")
            wait_ready(proxy_url, daemon, folder / "run.log")
            targets = {"direct": sim_url, "proxy": proxy_url}
            found = asyncio.run(latency(targets, args.requests))
            runs: dict[str, list[float]] = {name: [] for name in targets}
            for _ in range(args.rounds):  # alternating rounds; the medians are compared
                for name, url in targets.items():
                    runs[name].append(
                        asyncio.run(throughput(url, args.throughput, args.concurrency))
                    )
            rates = {name: statistics.median(values) for name, values in runs.items()}
            report(found, rates, args)
            print("throughput rounds: " + "; ".join(
                f"{name} {' '.join(f'{v:.0f}' for v in values)}" for name, values in runs.items()
            ))  # fmt: skip
        recorded = sqlite3.connect(folder / "bench.db").execute("select count(*) from events")
        sink = folder / "events.jsonl"
        delivered = len(sink.read_text().splitlines()) if sink.exists() else 0
        print(
            f"\nevents recorded: {recorded.fetchone()[0]}, delivered to the file sink: {delivered}"
        )


if __name__ == "__main__":
    main()
