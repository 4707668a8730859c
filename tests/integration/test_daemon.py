"""The daemon end to end: simulator → poll → diff → store → signed webhooks."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
import structlog
from standardwebhooks.webhooks import Webhook

from poller.app import App
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver

from .conftest import SECRET, eventually, make_config


def envelopes(receiver: WebhookReceiver) -> list[dict[str, Any]]:
    docs = []
    for r in receiver.delivered():
        Webhook(SECRET).verify(r.body, r.headers)
        doc = r.json()
        assert r.headers["webhook-id"] == doc["id"]
        docs.append(doc)
    return docs


def by_type(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        out.setdefault(doc["type"], []).append(doc["data"])
    return out


async def test_every_polled_trigger_once_signed_with_seed_fields(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_url: str
) -> None:
    """Each polled trigger reaches the webhook once per id, signed, with the seed's fields."""
    config = make_config(server.url, receiver.url, store_url)
    sim.create_model()  # a model that stays, so deleting the new one is not "all of them"
    async with App(config) as app:
        runner = Runner(app)
        await runner.once()  # baseline
        upload = sim.create_file(purpose="batch", filename="in.jsonl")
        ok = sim.create_batch_job(outcome="SUCCESS", total_requests=3)
        failed = sim.create_batch_job(outcome="FAILED")
        timeout = sim.create_batch_job(outcome="TIMEOUT_EXCEEDED")
        cancelled = sim.create_batch_job(outcome="CANCELLED")
        ft_ok = sim.create_fine_tuning_job(outcome="SUCCESS")
        ft_failed = sim.create_fine_tuning_job(outcome="FAILED")
        ft_invalid = sim.create_fine_tuning_job(outcome="FAILED_VALIDATION")
        ft_cancelled = sim.create_fine_tuning_job(outcome="CANCELLED")
        await runner.once()
        sim.advance_clock(3600)
        await runner.once()
        model_id = sim.get_fine_tuning_job(ft_ok["id"])["fine_tuned_model"]
        sim.delete("files", upload["id"])
        sim.delete("models", model_id)
        await runner.once()
        await runner.once()

    docs = envelopes(receiver)
    assert len({d["id"] for d in docs}) == len(docs), "an event id arrived twice"
    events = by_type(docs)
    final = {j["id"]: sim.get_batch_job(j["id"]) for j in (ok, failed, timeout, cancelled)}

    assert {d["id"] for d in events["batch_job.created"]} == set(final)
    assert events["batch_job.created"][0].keys() == {"id", "status", "model"}
    assert events["batch_job.succeeded"] == [
        {
            "id": ok["id"],
            "status": "SUCCESS",
            "output_file": final[ok["id"]]["output_file"],
            "total_requests": 3,
        }
    ]
    assert sorted((d["id"], d["status"]) for d in events["batch_job.failed"]) == sorted(
        [(failed["id"], "FAILED"), (timeout["id"], "TIMEOUT_EXCEEDED")]
    )
    assert all(
        d.keys() == {"id", "status", "error_file"} and d["error_file"]
        for d in events["batch_job.failed"]
    )
    assert events["batch_job.cancelled"] == [
        {"id": cancelled["id"], "status": "CANCELLED", "model": cancelled["model"]}
    ]
    assert {d["id"] for d in events["fine_tuning_job.created"]} == {
        ft_ok["id"],
        ft_failed["id"],
        ft_invalid["id"],
        ft_cancelled["id"],
    }
    (succeeded,) = events["fine_tuning_job.succeeded"]
    assert succeeded["id"] == ft_ok["id"] and succeeded["fine_tuned_model"] == model_id
    assert isinstance(succeeded["trained_tokens"], int)
    assert sorted(d["status"] for d in events["fine_tuning_job.failed"]) == [
        "FAILED",
        "FAILED_VALIDATION",
    ]
    assert [d["id"] for d in events["fine_tuning_job.cancelled"]] == [ft_cancelled["id"]]
    uploaded = {d["id"]: d for d in events["file.uploaded"]}
    assert uploaded[upload["id"]] == {
        "id": upload["id"],
        "filename": "in.jsonl",
        "purpose": "batch",
        "size": upload["bytes"],
    }
    assert final[ok["id"]]["output_file"] in uploaded
    assert events["file.deleted"] == [{"id": upload["id"]}]
    (created_model,) = events["model.created"]
    assert created_model["id"] == model_id and created_model["job"] == ft_ok["id"]
    assert events["model.deleted"] == [{"id": model_id, "owned_by": created_model["owned_by"]}]


async def test_first_poll_is_a_silent_baseline(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """What exists at the first poll is recorded, not announced; a running job's outcome is."""
    sim.create_file()
    sim.create_batch_job(outcome="SUCCESS", queued_for=0, running_for=0)
    running = sim.create_batch_job(outcome="SUCCESS", queued_for=0, running_for=600)
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        runner = Runner(app)
        await runner.once()
        assert receiver.requests == []
        sim.advance_clock(601)
        await runner.once()
    jobs = [
        (d["type"], d["data"]["id"]) for d in envelopes(receiver) if d["type"] != "file.uploaded"
    ]
    assert jobs == [("batch_job.succeeded", running["id"])]  # (its output file is new, too)


async def test_emit_existing_announces_the_baseline(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """With emit_existing, the first poll announces what exists."""
    sim.create_file()
    job = sim.create_batch_job(outcome="FAILED", queued_for=0, running_for=0)
    config = make_config(server.url, receiver.url, store_file, poll={"emit_existing": True})
    async with App(config) as app:
        await Runner(app).once()
    types = Counter(d["type"] for d in envelopes(receiver))
    assert types["file.uploaded"] >= 1 and types["batch_job.created"] == 1
    assert types["batch_job.failed"] == 1
    assert job["id"] in {d["data"]["id"] for d in envelopes(receiver)}


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "empty"},
        {"kind": "truncate", "drop": 1},
        {"kind": "garbled"},
        {"kind": "garbled", "body": {"data": "oops"}},
        {"kind": "status", "status": 500},
        {"kind": "status", "status": 502},
        {"kind": "status", "status": 429, "headers": {"Retry-After": "0"}},
        {"kind": "disconnect"},
    ],
)
async def test_api_faults_never_delete(
    sim: Simulator,
    server: SimulatorServer,
    receiver: WebhookReceiver,
    store_file: str,
    fault: dict[str, Any],
) -> None:
    """A burst of API faults on the files listing produces no deletion."""
    for n in range(3):
        sim.create_file(filename=f"f{n}.jsonl")
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        runner = Runner(app)
        await runner.once()
        sim.add_fault(match={"method": "GET", "path": "/v1/files"}, count=4, **fault)
        for _ in range(2):
            await runner.once()
        sim.clear_faults()
        await runner.once()
    assert [d for d in envelopes(receiver) if d["type"] == "file.deleted"] == []


async def test_listing_absence_needs_a_404(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """An item missing from a complete listing but still answering its GET is not deleted."""
    files = [sim.create_file(filename=f"f{n}.jsonl") for n in range(4)]
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        runner = Runner(app)
        await runner.once()
        # a listing that adds up (total 3) but leaves out a file that still exists
        listing = sim.list_files()
        body = {"data": listing["data"][1:], "object": "list", "total": 3}
        sim.add_fault(match={"method": "GET", "path": "/v1/files"}, kind="garbled", body=body)
        await runner.once()
        assert [d for d in envelopes(receiver) if d["type"] == "file.deleted"] == []
        sim.delete("files", files[0]["id"])
        await runner.once()
    assert [d["data"]["id"] for d in envelopes(receiver) if d["type"] == "file.deleted"] == [
        files[0]["id"]
    ]


async def test_empty_listing_holds_deletions(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """An empty listing deleting poll.mass_delete_min files deletes nothing until confirmed."""
    files = [sim.create_file() for _ in range(2)]
    poll = {"reconcile_interval": "10m", "mass_delete_min": 2}
    config = make_config(server.url, receiver.url, store_file, poll=poll)
    now = [dt.datetime.now(dt.UTC)]
    async with App(config, clock=lambda: now[0]) as app:
        runner = Runner(app)
        await runner.once()
        for f in files:
            sim.delete("files", f["id"])
        with structlog.testing.capture_logs() as logs:
            await runner.once()
        assert "deletions_held" in {e["event"] for e in logs}
        assert [d for d in envelopes(receiver) if d["type"] == "file.deleted"] == []
        now[0] += dt.timedelta(minutes=10)
        await runner.once()
    deleted = {d["data"]["id"] for d in envelopes(receiver) if d["type"] == "file.deleted"}
    assert deleted == {f["id"] for f in files}


async def test_fine_tuning_404_switches_the_source_off(
    server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """When the fine-tuning endpoint answers 404 that source stops, with one warning."""
    sim = Simulator(fine_tuning=False)
    with SimulatorServer(sim) as ft_less:
        async with App(make_config(ft_less.url, receiver.url, store_file)) as app:
            runner = Runner(app)
            with structlog.testing.capture_logs() as logs:
                await runner.once()
                await runner.once()
                sim.create_batch_job()
                await runner.once()
    warnings = [e for e in logs if e["event"] == "source_disabled"]
    assert len(warnings) == 1 and warnings[0]["source"] == "fine_tuning_jobs"
    assert "batch_job.created" in {d["type"] for d in envelopes(receiver)}


async def test_wrong_key_is_reported_and_never_logged(
    receiver: WebhookReceiver, store_file: str
) -> None:
    """A refused key is reported clearly, backed off, and never appears in a log line."""
    key = "sk-wrong-key-0123456789"
    sim = Simulator(api_key="sk-right-key")
    with SimulatorServer(sim) as locked:
        config = make_config(locked.url, receiver.url, store_file, mistral={"api_key": key})
        async with App(config) as app:
            runner = Runner(app)
            with structlog.testing.capture_logs() as logs:
                health = await runner.poll_once(*app.pollers()[0])
    assert health.error_streak == 1 and health.next_delay > 0
    failure = next(e for e in logs if e["event"] == "poll_failed")
    assert "api_key" in failure["error"]
    assert key not in repr(logs)
    assert sim.stats()["by_route"].get("GET /v1/batch/jobs", 0) == 1


async def test_daemon_runs_on_its_schedule(
    sim: Simulator, server: SimulatorServer, receiver: WebhookReceiver, store_url: str
) -> None:
    """`run` polls on its own and delivers a job's created and succeeded within seconds."""
    config = make_config(server.url, receiver.url, store_url)
    stop = asyncio.Event()
    async with App(config) as app:
        task = asyncio.create_task(Runner(app).run(stop, grace=1))
        await eventually(lambda: app.store.source_state("default", "batch_jobs").baselined)
        job = sim.create_batch_job(outcome="SUCCESS", queued_for=0.2, running_for=0.3)
        await asyncio.to_thread(receiver.wait_delivered, 3, 10)
        stop.set()
        await task
    jobs = [
        (d["type"], d["data"]["id"]) for d in envelopes(receiver) if d["type"] != "file.uploaded"
    ]
    assert jobs == [("batch_job.created", job["id"]), ("batch_job.succeeded", job["id"])]


async def test_store_error_is_a_failed_poll(
    server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """A store that fails mid-poll counts as a failed poll, backed off like an API error."""
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        runner = Runner(app)
        assert app.engine is not None
        with app.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE resources"))
        with structlog.testing.capture_logs() as logs:
            health = await runner.poll_once(*app.pollers()[0])
        state = app.store.source_state("default", "batch_jobs")
    assert health.error_streak == 1 and health.next_delay > 0
    failure = next(e for e in logs if e["event"] == "poll_failed")
    assert "no such table: resources" in failure["error"]
    assert state.error_streak == 1 and "no such table" in (state.last_error or "")


async def test_store_too_broken_to_record_a_failure_keeps_the_poll_loop(
    server: SimulatorServer, receiver: WebhookReceiver, store_file: str
) -> None:
    """A poll failing on a store that cannot record the failure either returns, backed off."""
    async with App(make_config(server.url, receiver.url, store_file)) as app:
        runner = Runner(app)
        assert app.engine is not None
        with app.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE source_state"))
        health = await runner.poll_once(*app.pollers()[0])
    assert health.error_streak == 1 and health.next_delay > 0
    assert "no such table: source_state" in (health.last_error or "")


class _Quits:
    """A service that stops on its own, as a broken listener would."""

    name = "broken"

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.sleep(0.05)


async def test_a_service_that_stops_on_its_own_fails_the_daemon(
    server: SimulatorServer, store_file: str
) -> None:
    """When a part of the daemon ends by itself, the daemon stops with an error (not exit 0)."""
    from poller.exceptions import ServiceError

    async with App(make_config(server.url, None, store_file)) as app:
        app.services.append(_Quits())
        with pytest.raises(ServiceError, match="broken"):
            await asyncio.wait_for(Runner(app).run(asyncio.Event(), grace=1), 10)


async def test_a_poll_due_as_the_daemon_stops_is_not_started(
    sim: Simulator, server: SimulatorServer, store_file: str
) -> None:
    """A poll the scheduler hands over once stopping began makes no request (none abandoned)."""
    async with App(make_config(server.url, None, store_file)) as app:
        runner = Runner(app)
        runner._stopping = True
        ws, poller = app.pollers()[0]
        await runner._job(ws, poller, "due-at-stop")
    assert sim.stats()["total"] == 0


async def test_a_poll_in_flight_at_stop_finishes_within_the_grace(
    sim: Simulator, server: SimulatorServer, store_file: str
) -> None:
    """Stopping lets a poll waiting on the API finish and report, instead of abandoning it."""
    sim.add_fault(kind="delay", seconds=1.0, match={"method": "GET", "path": "/v1/models"})
    async with App(make_config(server.url, None, store_file)) as app:
        stop = asyncio.Event()
        with structlog.testing.capture_logs() as logs:
            task = asyncio.create_task(Runner(app).run(stop, grace=10))
            await eventually(lambda: "GET /v1/models" in sim.stats()["by_route"])
            stop.set()
            await task
    after = [e for e in logs[[e["event"] for e in logs].index("stopping") :]]
    assert ("poll_done", "models") in {(e["event"], e.get("source")) for e in after}
    assert "poll_abandoned" not in {e["event"] for e in logs}
