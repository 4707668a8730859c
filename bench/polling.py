"""Polling cost and latency, measured against the simulator (a separate process).

- **requests per idle cycle** with 1k, 10k and 100k finished batch jobs in the workspace:
  poller's incremental cycle next to a naive poller that lists everything every cycle;
- **requests per idle cycle of every source** with as many files and workflow runs
  beside those jobs, 100 fine-tuned models and no library, counted by the simulator; how
  many cycles an upload takes to be announced, and a deletion of the oldest file made in
  the same cycle as an upload (so the total does not move) — once a fresh upload, once a
  slow one, listed after a newer file poller knows (created 45 s before the newest);
- **CPU per cycle and peak RSS** with 10k and 100k tracked resources (each size in a
  fresh child process, so the figures are that process's alone);
- **detection-to-delivery latency** with ``active_interval: 1s``: p50 and p95 over 100
  job transitions, from the moment a job finishes to its webhook's arrival at a local
  receiver, in a workspace where work is under way (so the source polls at its active
  interval).

Usage: ``python -m bench.polling [--sizes 1000,10000,100000] [--transitions 100]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from typing import Any

import httpx

from bench.common import listing_costs, peak_rss_mb, percentile, row, simulator, sizes_in_children
from poller import logs
from poller import store as store_mod
from poller.app import STRATEGIES
from poller.mistral.client import MistralClient
from poller.polling import Settings, SourcePoller
from poller.sources import ALL, BATCH_JOBS, FILES
from poller.testing import free_port

IDLE_CYCLES = 10
MODELS = 100
WITHIN = 5
"""Cycles a change is given to be announced before the bench says it was not."""


async def measure_size(port: int, size: int, root: str) -> dict[str, Any]:
    """Baseline, idle incremental cycles, one reconcile and naive cycles over ``size`` jobs."""
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=120) as control:
        (await control.post("/_sim/reset")).raise_for_status()
        body = {"batch_jobs": size, "files": size, "status": "SUCCESS"}
        (await control.post("/_sim/bulk", json=body)).raise_for_status()
        runs = await control.post("/_sim/workflow_runs/bulk", json={"count": size})
        runs.raise_for_status()
        for n in range(MODELS):
            model = {"id": f"ft:open-mistral-nemo:bench{n:04d}"}
            (await control.post("/_sim/models", json=model)).raise_for_status()
    engine = store_mod.create_engine(f"sqlite:///{root}/bench-{size}.db")
    store = store_mod.Store(engine, lambda _e: ["hook"])
    out: dict[str, Any] = {"size": size}
    async with httpx.AsyncClient(base_url=f"{base}/v1", timeout=120) as http:

        def poller(**settings: Any) -> SourcePoller:
            return SourcePoller(
                BATCH_JOBS,
                client=MistralClient(http),
                store=store,
                settings=Settings(**{"reconcile_interval": 3600, **settings}),
            )

        _, costs = await listing_costs(poller, IDLE_CYCLES)
        out.update(costs)
        out.update(await every_source(base, http, store))
    engine.dispose()
    out["peak_rss_mb"] = peak_rss_mb()
    return out


async def every_source(
    base: str, http: httpx.AsyncClient, store: store_mod.Store
) -> dict[str, Any]:
    """Idle cycles of every source, and how soon an upload and a hidden deletion show."""
    pollers = [
        STRATEGIES.get(spec.name, SourcePoller)(
            spec,
            client=MistralClient(http),
            store=store,
            settings=Settings(reconcile_interval=3600),
        )
        for spec in ALL
    ]
    naive_files = SourcePoller(
        FILES, client=MistralClient(http), store=store, settings=Settings(incremental=False)
    )
    async with httpx.AsyncClient(base_url=base, timeout=120) as control:

        async def cycle() -> tuple[int, set[tuple[str, str]]]:
            (await control.post("/_sim/stats/reset")).raise_for_status()
            seen: set[tuple[str, str]] = set()
            for p in pollers:
                seen.update((e.type, e.resource_id) for e in (await p.poll()).events)
            return (await control.get("/_sim/stats")).json()["total"], seen

        async def cycles_until(event: tuple[str, str]) -> tuple[int | None, int]:
            for n in range(1, WITHIN + 1):
                requests, seen = await cycle()
                if event in seen:
                    return n, requests
            return None, 0

        await cycle()  # baselines of the sources not polled yet
        idle = [(await cycle())[0] for _ in range(IDLE_CYCLES)]
        naive = (await naive_files.poll()).requests
        created = await control.post("/_sim/files", json={"filename": "bench.jsonl"})
        upload, _ = await cycles_until(("file.uploaded", created.json()["id"]))
        deep = await oldest_file(http)
        (await control.delete(f"/_sim/files/{deep}")).raise_for_status()
        (await control.post("/_sim/files", json={"filename": "hides.jsonl"})).raise_for_status()
        deletion, deletion_requests = await cycles_until(("file.deleted", deep))
        # a slow upload: listed after a file poller knows that is newer than it
        now = (await control.get("/_sim/clock")).json()["now"]
        newer = await control.post(
            "/_sim/files", json={"filename": "n.jsonl", "created_at": now - 20}
        )
        await cycles_until(("file.uploaded", newer.json()["id"]))
        deep = await oldest_file(http)
        (await control.delete(f"/_sim/files/{deep}")).raise_for_status()
        late = {"filename": "slow.jsonl", "created_at": now - 45}
        (await control.post("/_sim/files", json=late)).raise_for_status()
        behind, behind_requests = await cycles_until(("file.deleted", deep))
    return {
        "all_idle_requests": statistics.mean(idle),
        "all_idle_max": max(idle),
        "naive_files_requests": naive,
        "upload_cycles": upload,
        "deletion_cycles": deletion,
        "deletion_requests": deletion_requests,
        "late_cycles": behind,
        "late_requests": behind_requests,
    }


async def oldest_file(http: httpx.AsyncClient) -> str:
    """The id of the file listed last (the oldest, newest first)."""
    total = (await http.get("/files", params={"page_size": 1})).json()["total"]
    oldest = await http.get("/files", params={"page": total - 1, "page_size": 1})
    return str(oldest.json()["data"][0]["id"])


def child(port: int, size: int) -> None:
    logs.configure(level="warning")
    with tempfile.TemporaryDirectory() as root:
        print(json.dumps(asyncio.run(measure_size(port, size, root))))


async def latency(port: int, transitions: int) -> list[float]:
    """Seconds from each job's transition to its succeeded webhook's arrival."""
    from poller import config as config_mod
    from poller.app import App
    from poller.runner import Runner
    from poller.testing import WebhookReceiver

    base = f"http://127.0.0.1:{port}"
    finished_at: dict[str, float] = {}
    with WebhookReceiver(validate=False) as receiver, tempfile.TemporaryDirectory() as root:
        config = config_mod.from_mapping(
            {
                "mistral": {"base_url": f"{base}/v1"},
                "store": {"url": f"sqlite:///{root}/latency.db"},
                "poll": {"interval": "30s", "active_interval": "1s"},
                "sinks": [
                    {
                        "name": "hook",
                        "type": "http",
                        "url": receiver.url,
                        "events": ["batch_job.succeeded"],
                    }
                ],
            }
        )
        stop = asyncio.Event()
        async with App(config) as app, httpx.AsyncClient(base_url=base) as control:
            (await control.post("/_sim/reset")).raise_for_status()
            # a long job keeps the workspace busy, as it is while batches run: the source
            # polls at its active interval (when idle, new jobs wait for the idle one)
            keeper = {"outcome": "SUCCESS", "queued_for": 0, "running_for": 3600}
            (await control.post("/_sim/batch_jobs", json=keeper)).raise_for_status()
            task = asyncio.create_task(Runner(app).run(stop, grace=2))
            await asyncio.sleep(2)
            rng = random.Random(7)
            for _ in range(transitions):
                running = rng.uniform(0.5, 3.0)
                sent = time.time()
                answer = await control.post(
                    "/_sim/batch_jobs",
                    json={"outcome": "SUCCESS", "queued_for": 0.5, "running_for": running},
                )
                answer.raise_for_status()
                finished_at[answer.json()["id"]] = (sent + time.time()) / 2 + 0.5 + running
                await asyncio.sleep(rng.uniform(0.05, 0.35))
            await asyncio.to_thread(receiver.wait_delivered, transitions, 60)
            stop.set()
            await task
        return [r.at - finished_at[r.json()["data"]["id"]] for r in receiver.delivered()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--transitions", type=int, default=100)
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
        results = sizes_in_children("bench.polling", port, sizes)
        delays = asyncio.run(latency(port, args.transitions))
    print(
        row(
            "finished jobs",
            "incremental req/cycle",
            "naive req/cycle",
            "CPU/incremental cycle (ms)",
            "CPU/reconcile (ms)",
            "baseline (s)",
            "peak RSS (MB)",
        )
    )
    for r in results:
        print(
            row(
                r["size"],
                f"{r['quiet_requests']:.1f}",
                f"{r['naive_requests']:.0f}",
                f"{r['quiet_cpu_ms']:.1f}",
                f"{r['reconcile_cpu_ms']:.0f}",
                f"{r['baseline_s']:.1f}",
                f"{r['peak_rss_mb']:.0f}",
            )
        )
    print()
    print(
        row(
            "files (+ as many jobs and runs, 100 models)",
            "req/idle cycle, every source (mean, max)",
            "files listed in full (req)",
            "upload announced (cycles)",
            "hidden deletion found (cycles, req that cycle)",
            "with a slow upload (cycles, req that cycle)",
        )
    )
    for r in results:
        print(
            row(
                r["size"],
                f"{r['all_idle_requests']:.1f}, {r['all_idle_max']}",
                r["naive_files_requests"],
                r["upload_cycles"],
                f"{r['deletion_cycles']}, {r['deletion_requests']}",
                f"{r['late_cycles']}, {r['late_requests']}",
            )
        )
    print(
        f"detection-to-delivery over {len(delays)} transitions (active_interval 1s): "
        f"p50 {percentile(delays, 50):.2f}s, p95 {percentile(delays, 95):.2f}s, "
        f"max {max(delays):.2f}s"
    )


if __name__ == "__main__":
    main()
