"""Workflow runs: requests per quiet cycle, against the simulator (a separate process).

For 1k, 10k and 100k ended runs in the workspace (seeded over the past 30 days):

- **baseline**: requests and seconds of the first, complete listing (1,000 runs a page);
- **quiet cycle**: requests (mean and max over 10 cycles) and CPU of poller's windowed
  cycle — runs started and runs ended since its cursor — next to a naive poller that
  lists every run every cycle;
- **an outcome**: a run that ends in that quiet workspace, how many cycles and requests
  until its ``workflow_run.completed``;
- **reconcile**: requests and CPU of the periodic full listing;
- **beside libraries**: with 5 libraries x 2,000 processed documents added, the requests
  of a quiet cycle of the workflow-runs and the libraries sources together, counted by
  the simulator.

Each size runs in a fresh child process, so CPU and peak RSS are that process's alone.

Usage: ``python -m bench.workflow_runs [--sizes 1000,10000,100000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
from typing import Any

import httpx

from bench.common import listing_costs, peak_rss_mb, row, simulator, sizes_in_children
from poller import logs
from poller import store as store_mod
from poller.libraries.source import LibraryPoller
from poller.mistral.client import MistralClient
from poller.polling import Polling, Settings
from poller.sources import LIBRARIES, WORKFLOW_RUNS
from poller.testing import free_port
from poller.workflow_runs.source import WorkflowRunPoller

QUIET_CYCLES = 10


async def measure_size(port: int, size: int, root: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=300) as control:
        (await control.post("/_sim/reset")).raise_for_status()
        seeded = await control.post("/_sim/workflow_runs/bulk", json={"count": size})
        seeded.raise_for_status()
    engine = store_mod.create_engine(f"sqlite:///{root}/bench-{size}.db")
    store = store_mod.Store(engine, lambda _e: ["hook"])
    out: dict[str, Any] = {"size": size}
    async with (
        httpx.AsyncClient(base_url=f"{base}/v1", timeout=300) as http,
        httpx.AsyncClient(base_url=base, timeout=300) as control,
    ):

        def poller(**settings: Any) -> WorkflowRunPoller:
            return WorkflowRunPoller(
                WORKFLOW_RUNS,
                client=MistralClient(http),
                store=store,
                settings=Settings(**{"reconcile_interval": 3600, **settings}),
            )

        windowed, costs = await listing_costs(poller, QUIET_CYCLES)
        out.update(costs)
        run = (await control.post("/_sim/workflow_runs", json={"running_for": 1})).json()
        await windowed.poll()  # it started
        (await control.post("/_sim/clock", json={"advance": 2})).raise_for_status()
        cycles, outcome_requests = 0, 0
        while cycles < 5:
            cycles += 1
            report = await windowed.poll()
            outcome_requests = report.requests
            if ("workflow_run.completed", run["run_id"]) in {
                (e.type, e.resource_id) for e in report.events
            }:
                break
        out["outcome_cycles"], out["outcome_requests"] = cycles, outcome_requests
        out.update(await beside_libraries(http, control, store, windowed))
    engine.dispose()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


async def beside_libraries(
    http: httpx.AsyncClient,
    control: httpx.AsyncClient,
    store: store_mod.Store,
    runs: Polling,
) -> dict[str, Any]:
    """Quiet cycles of the runs and libraries sources together, 5 x 2,000 documents added."""
    seeded = await control.post("/_sim/libraries/bulk", json={"libraries": 5, "documents": 2000})
    seeded.raise_for_status()
    libraries = LibraryPoller(
        LIBRARIES,
        client=MistralClient(http),
        store=store,
        settings=Settings(reconcile_interval=3600),
    )
    await libraries.poll()  # its baseline
    requests = []
    for _ in range(QUIET_CYCLES):
        (await control.post("/_sim/stats/reset")).raise_for_status()
        for poller in (runs, libraries):
            assert (await poller.poll()).events == ()
        requests.append((await control.get("/_sim/stats")).json()["total"])
    return {"together_requests": statistics.mean(requests), "together_max": max(requests)}


def child(port: int, size: int) -> None:
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory() as root:
        print(json.dumps(asyncio.run(measure_size(port, size, root))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--child", nargs=2, type=int, metavar=("PORT", "SIZE"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    logs.configure(level="warning")
    port = free_port()
    sizes = [int(s) for s in args.sizes.split(",")]
    with simulator(port):
        results = sizes_in_children("bench.workflow_runs", port, sizes)
    print(
        row(
            "ended runs",
            "quiet cycle req (mean, max)",
            "naive req/cycle",
            "CPU/quiet cycle (ms)",
            "outcome announced (cycles, req)",
            "reconcile (req, CPU ms)",
            "baseline (req, s)",
            "peak RSS (MB)",
            "with 5 x 2k library documents, both sources (req, mean, max)",
        )
    )
    for r in results:
        print(
            row(
                r["size"],
                f"{r['quiet_requests']:.1f}, {r['quiet_max']}",
                f"{r['naive_requests']:.0f}",
                f"{r['quiet_cpu_ms']:.1f}",
                f"{r['outcome_cycles']}, {r['outcome_requests']}",
                f"{r['reconcile_requests']}, {r['reconcile_cpu_ms']:.0f}",
                f"{r['baseline_requests']}, {r['baseline_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
                f"{r['together_requests']:.1f}, {r['together_max']}",
            )
        )


if __name__ == "__main__":
    main()
