"""The libraries source's cost, measured against the simulator (a separate process).

For each shape (libraries x documents, every document processed):

- **requests per quiet cycle**: poller's cycle (the library list, and nothing else when
  nothing moved) next to a naive poller that reads every library's documents every cycle;
- **requests for a change**, counted by the simulator in the cycle that announces it:
  an upload (announced with its outcome when the processing is quick), a document's
  processing seen to its end (``…/status``, then the document), a deletion of the oldest
  document of a library (the library read whole, then a GET answering 404);
- **CPU per quiet cycle** and the baseline's requests and time.

Usage: ``python -m bench.libraries [--shapes 5x2000,5x20000,50x2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from typing import Any

import httpx

from bench.common import row, simulator
from poller import logs
from poller import store as store_mod
from poller.libraries.source import LibraryPoller
from poller.mistral.client import MistralClient
from poller.polling import PollReport, Settings
from poller.sources import LIBRARIES
from poller.testing import free_port

QUIET_CYCLES = 10


async def measure(port: int, libraries: int, documents: int, root: str) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    engine = store_mod.create_engine(f"sqlite:///{root}/bench-{libraries}x{documents}.db")
    store = store_mod.Store(engine, lambda _e: ["hook"])
    out: dict[str, Any] = {"shape": f"{libraries} x {documents:,}"}
    async with (
        httpx.AsyncClient(base_url=base, timeout=300) as control,
        httpx.AsyncClient(base_url=f"{base}/v1", timeout=300) as http,
    ):
        (await control.post("/_sim/reset")).raise_for_status()
        bulk = {"libraries": libraries, "documents": documents}
        (await control.post("/_sim/libraries/bulk", json=bulk)).raise_for_status()

        def poller(**settings: Any) -> LibraryPoller:
            return LibraryPoller(
                LIBRARIES,
                client=MistralClient(http),
                store=store,
                settings=Settings(**{"reconcile_interval": 3600, **settings}),
            )

        async def counted(p: LibraryPoller) -> tuple[PollReport, int]:
            (await control.post("/_sim/stats/reset")).raise_for_status()
            report = await p.poll()
            return report, (await control.get("/_sim/stats")).json()["total"]

        lean = poller()
        started = time.perf_counter()
        _, out["baseline_requests"] = await counted(lean)
        out["baseline_s"] = time.perf_counter() - started
        quiet, cpu = [], []
        for _ in range(QUIET_CYCLES):
            before = time.process_time()
            report, requests = await counted(lean)
            cpu.append(time.process_time() - before)
            assert not report.events, report.events
            quiet.append(requests)
        out["quiet_requests"] = statistics.mean(quiet)
        out["quiet_max"] = max(quiet)
        out["cpu_ms"] = statistics.median(cpu) * 1000
        out["naive_requests"] = (await counted(poller(incremental=False)))[1]
        shelf = (await http.get("/libraries", params={"page_size": 1})).json()["data"][0]["id"]
        quick = {"name": "quick.pdf", "queued_for": 0, "processing_for": 0}
        (await control.post(f"/_sim/libraries/{shelf}/documents", json=quick)).raise_for_status()
        report, out["upload_requests"] = await counted(lean)
        out["upload_events"] = sorted(e.type for e in report.events)
        slow = {"name": "slow.pdf", "processing_for": 3600}
        made = await control.post(f"/_sim/libraries/{shelf}/documents", json=slow)
        await counted(lean)
        (await control.post(f"/_sim/libraries/{shelf}/documents/{made.json()['id']}/advance",
                            json={"status": "done"})).raise_for_status()  # fmt: skip
        report, out["outcome_requests"] = await counted(lean)
        out["outcome_events"] = sorted(e.type for e in report.events)
        page: dict[str, int | str] = {"page": (documents + 1) // 100, "page_size": 100}
        oldest = (await http.get(f"/libraries/{shelf}/documents", params=page)).json()["data"][-1]
        gone = await control.delete(f"/_sim/libraries/{shelf}/documents/{oldest['id']}")
        gone.raise_for_status()
        report, out["deletion_requests"] = await counted(lean)
        out["deletion_events"] = sorted(e.type for e in report.events)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="5x2000,5x20000,50x2000")
    args = parser.parse_args()
    logs.configure(level="warning")
    port = free_port()
    results = []
    with simulator(port), tempfile.TemporaryDirectory() as root:
        for shape in args.shapes.split(","):
            libraries, documents = (int(n) for n in shape.split("x"))
            results.append(asyncio.run(measure(port, libraries, documents, root)))
    print(
        row(
            "libraries x documents",
            "req/quiet cycle (mean, max)",
            "naive req/cycle",
            "CPU/quiet cycle (ms)",
            "baseline (req, s)",
            "upload (req)",
            "outcome (req)",
            "deepest deletion (req)",
        )
    )
    for r in results:
        print(
            row(
                r["shape"],
                f"{r['quiet_requests']:.1f}, {r['quiet_max']}",
                f"{r['naive_requests']:,}",
                f"{r['cpu_ms']:.1f}",
                f"{r['baseline_requests']:,}, {r['baseline_s']:.1f}",
                f"{r['upload_requests']} ({', '.join(r['upload_events'])})",
                f"{r['outcome_requests']} ({', '.join(r['outcome_events'])})",
                f"{r['deletion_requests']} ({', '.join(r['deletion_events'])})",
            )
        )


if __name__ == "__main__":
    main()
