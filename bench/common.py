"""Shared helpers of the benchmark scripts: ports, child processes, figures."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from poller.polling import Polling
from poller.testing import wait_port

ROOT = pathlib.Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def process(args: Sequence[str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A child process (python ARGS…) serving on ``port``, stopped afterwards."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def simulator(port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return process(["-m", "poller", "simulate", "--port", str(port)], port)


def sizes_in_children(module: str, port: int, sizes: Iterable[int]) -> list[dict[str, Any]]:
    """``python -m MODULE --child PORT SIZE`` for each size in turn, each in a fresh process
    (so its CPU and peak RSS are its own); the JSON line each printed last."""
    results = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, "-m", module, "--child", str(port), str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return results


def receiver(port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    return process([str(ROOT / "bench" / "receiver.py"), str(port)], port)


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def row(*cells: object) -> str:
    return " | ".join(str(c) for c in cells)


async def listing_costs(
    make: Callable[..., Polling], cycles: int
) -> tuple[Polling, dict[str, Any]]:
    """What one source's poller costs over what the simulator holds, and that poller.

    ``make(**settings)`` builds a poller of the source (``Settings`` overrides). The figures:
    its baseline (requests, seconds, RSS after it), ``cycles`` quiet cycles (requests, mean
    and max; CPU), a reconcile (requests, CPU) and a naive poller's complete listing every
    cycle (requests). The poller returned goes on with cheap cycles.
    """
    cheap = make()
    started = time.perf_counter()
    baseline = await cheap.poll()
    out: dict[str, Any] = {
        "baseline_s": time.perf_counter() - started,
        "baseline_requests": baseline.requests,
        "rss_after_baseline_mb": peak_rss_mb(),
    }
    cpu, requests = [], []
    for _ in range(cycles):
        before = time.process_time()
        report = await cheap.poll()
        cpu.append(time.process_time() - before)
        requests.append(report.requests)
        assert report.mode == "incremental" and report.events == ()
    out["quiet_requests"] = statistics.mean(requests)
    out["quiet_max"] = max(requests)
    out["quiet_cpu_ms"] = statistics.mean(cpu) * 1000
    before = time.process_time()
    report = await make(reconcile_interval=0).poll()
    out["reconcile_cpu_ms"] = (time.process_time() - before) * 1000
    out["reconcile_requests"] = report.requests
    naive = make(incremental=False)
    out["naive_requests"] = statistics.mean([(await naive.poll()).requests for _ in range(2)])
    return cheap, out
