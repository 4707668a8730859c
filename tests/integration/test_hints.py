"""Hinted events: calls through the proxy that change a polled resource, announced at once.

The official SDK → proxy → simulator (its clock stopped, so nothing moves unless a test
moves it), events to a real webhook receiver, the daemon's own runner polling beside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import structlog

from poller import actions, catalog
from poller import config as config_mod
from poller.app import App
from poller.proxy.server import ProxyService
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer
from poller.testing import WebhookReceiver, free_port

from .conftest import eventually, make_config

sdk = pytest.importorskip("mistralai.client")

KEY = "sk-hint-workspace-key-0123456789"
T0 = 1_750_000_000.0
POLLED = 6


def config_for(
    server: SimulatorServer, receiver: WebhookReceiver, store_url: str, active: str = "1h"
) -> config_mod.Config:
    """Idle polling an hour apart: within a test only the baseline polls, unless woken."""
    return make_config(
        server.url,
        receiver.url,
        store_url,
        mistral={"api_key": KEY},
        poll={"interval": "1h", "active_interval": active},
        proxy={"listen": f"127.0.0.1:{free_port()}"},
    )


class Daemon:
    """``Runner.run`` over one App, its proxy ready and every source's baseline taken."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runner = Runner(app)
        self.stop = asyncio.Event()
        (self.proxy,) = (s for s in app.services if isinstance(s, ProxyService))
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run(self.stop, grace=2))
        await asyncio.wait_for(self.proxy.ready.wait(), 10)
        await eventually(
            lambda: sum(h.last_report is not None for h in self.runner.health.values()) == POLLED
        )

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task

    def polls(self) -> int:
        return self.runner.cycles


@pytest.fixture
async def daemon() -> AsyncIterator[Callable[[config_mod.Config], Any]]:
    running: list[tuple[App, Daemon]] = []

    async def start(config: config_mod.Config) -> Daemon:
        app = App(config)
        await app.__aenter__()
        daemon = Daemon(app)
        running.append((app, daemon))
        await daemon.start()
        return daemon

    yield start
    for app, daemon in running:
        await daemon.close()
        await app.aclose()


@contextlib.asynccontextmanager
async def mistral(url: str, key: str = KEY) -> AsyncIterator[Any]:
    """An official SDK client for ``url``, its connections closed afterwards."""
    client = sdk.Mistral(api_key=key, server_url=url)
    try:
        yield client
    finally:
        await client.__aexit__(None, None, None)
        client.__exit__(None, None, None)


async def inline_batch_job(client: Any) -> Any:
    """A batch job with its one request inline, created through ``client``."""
    return await client.batch.jobs.create_async(
        model="mistral-small-latest",
        endpoint="/v1/chat/completions",
        requests=[{"custom_id": "1", "body": {"messages": [{"role": "user", "content": "hi"}]}}],
    )


def frozen(**options: Any) -> Simulator:
    return Simulator(clock=lambda: T0, seed=3, **options)


def polled_id(event_type: str, resource_id: str, created: int) -> str:
    return catalog.event_id("default", event_type, resource_id, created)


async def next_poll(config: config_mod.Config) -> list[Any]:
    """One poll of every source and a delivery pass, as ``poller once`` does."""
    async with App(config) as app:
        outcomes = await Runner(app).once()
    assert not [o.error for o in outcomes if o.failed]
    return [e for o in outcomes if o.report is not None for e in o.report.events]


async def test_every_hinted_event_reaches_the_webhook_before_the_next_poll(
    store_url: str, daemon: Any
) -> None:
    """Upload, batch create, fine-tuning create, deletes: delivered at once, with polling's ids."""
    sim = frozen(api_key=KEY)
    model = sim.create_model()
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_url)
        running = await daemon(config)
        polls = running.polls()
        async with mistral(running.proxy.url) as client:
            kept = await client.files.upload_async(
                file={"file_name": "requests.jsonl", "content": b'{"a": 1}\n'}, purpose="batch"
            )
            doomed = await client.files.upload_async(
                file={"file_name": "train.jsonl", "content": b'{"b": 2}\n'}, purpose="fine-tune"
            )
            job = await client.batch.jobs.create_async(
                input_files=[kept.id], model="mistral-small-latest", endpoint="/v1/chat/completions"
            )
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
                answer = await http.post(
                    f"{running.proxy.url}/v1/fine_tuning/jobs",
                    json={
                        "model": "open-mistral-nemo",
                        "training_files": [{"file_id": doomed.id, "weight": 1}],
                        "hyperparameters": {"training_steps": 10, "learning_rate": 0.0001},
                    },
                )
            tuning = answer.json()
            await client.files.delete_async(file_id=doomed.id)
            await client.models.delete_async(model_id=model["id"])
            delivered = await asyncio.to_thread(receiver.wait_delivered, 6, 30)
            assert running.polls() == polls
        await running.close()
        hinted = {(d["type"], d["id"]) for d in (r.json() for r in delivered)}
        created = int(T0)
        assert hinted == {
            ("file.uploaded", polled_id("file.uploaded", kept.id, created)),
            ("file.uploaded", polled_id("file.uploaded", doomed.id, created)),
            ("batch_job.created", polled_id("batch_job.created", job.id, created)),
            (
                "fine_tuning_job.created",
                polled_id("fine_tuning_job.created", tuning["id"], created),
            ),
            ("file.deleted", polled_id("file.deleted", doomed.id, created)),
            ("model.deleted", polled_id("model.deleted", model["id"], model["created"])),
        }
        outside = sim.create_batch_job()
        found = await next_poll(config)
        assert [(e.type, e.resource_id) for e in found] == [("batch_job.created", outside["id"])]
        await asyncio.to_thread(receiver.wait_delivered, 7, 30)
    ids = [r.json()["id"] for r in receiver.delivered()]
    assert len(ids) == len(set(ids)) == 7


async def test_unknown_keys_and_failed_calls_record_nothing(store_file: str, daemon: Any) -> None:
    """A stranger's key or a refused call records nothing; polling still finds the upload."""
    sim = frozen()  # takes any key, so the stranger's call succeeds upstream
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_file)
        running = await daemon(config)
        url = running.proxy.url
        async with mistral(url, "sk-someone-else") as stranger:
            theirs = await stranger.files.upload_async(
                file={"file_name": "theirs.jsonl", "content": b"{}\n"}, purpose="batch"
            )
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as http:
            refused = await http.post(f"{url}/v1/batch/jobs", json={"endpoint": 7})
            missing = await http.post(f"{url}/v1/batch/jobs/{theirs.id}/cancel")
        async with mistral(url) as client:
            ours = await client.files.upload_async(
                file={"file_name": "ours.jsonl", "content": b"{}\n"}, purpose="batch"
            )
        delivered = await asyncio.to_thread(receiver.wait_delivered, 1, 30)
        assert [e.resource_id for e in running.app.ledger.events()] == [ours.id]
        await running.close()
    assert (refused.status_code, missing.status_code) == (422, 404)
    assert [r.json()["data"]["id"] for r in delivered] == [ours.id]
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        found = await next_poll(config_for(server, receiver, store_file))
    assert [(e.type, e.resource_id) for e in found] == [("file.uploaded", theirs.id)]


async def test_a_job_created_through_the_proxy_is_polled_at_the_active_interval(
    store_file: str, daemon: Any
) -> None:
    """Idle polling an hour apart, yet the job's outcome is announced: it woke its source."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        running = await daemon(config_for(server, receiver, store_file, active="0.2s"))
        async with mistral(running.proxy.url) as client:
            job = await inline_batch_job(client)
            await asyncio.to_thread(receiver.wait_delivered, 1, 30)
            sim.advance("batch_jobs", job.id, "SUCCESS")
            delivered = await asyncio.to_thread(receiver.wait_delivered, 2, 30)
    assert [r.json()["type"] for r in delivered] == ["batch_job.created", "batch_job.succeeded"]


async def test_action_request_records_the_hint_with_its_snapshot_row(
    store_url: str, sim: Simulator, server: SimulatorServer
) -> None:
    """poller action request POST /batch/jobs: batch_job.created at once, none from the poll."""
    config = make_config(server.url, None, store_url)
    await next_poll(config)
    out: list[bytes] = []
    async with App(config) as app:
        body = {
            "model": "mistral-small-latest",
            "endpoint": "/v1/chat/completions",
            "requests": [{"custom_id": "1", "body": {"messages": []}}],
        }
        result = await actions.call(app, "POST", "/v1/batch/jobs", body, out=out.append)
    assert [e.type for e in result.events] == ["batch_job.created"]
    assert await next_poll(config) == []


async def recorded_by_proxy(config: config_mod.Config, key: str) -> list[Any]:
    """Upload one file through the proxy of ``config`` with ``key``; the events recorded."""
    async with App(config) as app:
        service = app.services[0]
        assert isinstance(service, ProxyService)
        stop = asyncio.Event()
        serving = asyncio.create_task(service.run(stop))
        await asyncio.wait_for(service.ready.wait(), 10)
        async with mistral(service.url, key) as client:
            await client.files.upload_async(
                file={"file_name": "a.jsonl", "content": b"{}\n"}, purpose="batch"
            )
        stop.set()
        await serving  # waits for the records still pending
        return app.ledger.events()


async def test_a_call_is_recorded_in_the_workspace_its_key_belongs_to(
    server: SimulatorServer, store_file: str
) -> None:
    """Two workspaces on one API: the upload made with b's key is b's event."""
    workspaces = [
        {"name": name, "base_url": server.url, "api_key": f"sk-{name}-0123456789"}
        for name in ("a", "b")
    ]
    config = make_config(
        server.url,
        None,
        store_file,
        workspaces=workspaces,
        proxy={"listen": f"127.0.0.1:{free_port()}", "workspace": "a"},
    )
    with structlog.testing.capture_logs() as logs:
        events = await recorded_by_proxy(config, "sk-b-0123456789")
    assert [(e.type, e.workspace) for e in events] == [("file.uploaded", "b")]
    seen = json.dumps(logs, default=str) + json.dumps([e.envelope() for e in events], default=str)
    assert "0123456789" not in seen


async def test_with_inject_key_the_call_is_the_proxy_workspace_s(
    server: SimulatorServer, store_file: str
) -> None:
    """inject_key: the client sends the local token; the workspace's key goes, and names it."""
    config = make_config(
        server.url,
        None,
        store_file,
        mistral={"api_key": KEY},
        proxy={
            "listen": f"127.0.0.1:{free_port()}",
            "inject_key": True,
            "token": "local-token-0123456789",
        },
    )
    events = await recorded_by_proxy(config, "local-token-0123456789")
    assert [(e.type, e.workspace) for e in events] == [("file.uploaded", "default")]


async def test_a_cancel_answered_cancelled_is_announced_at_once(
    store_file: str, daemon: Any
) -> None:
    """Cancel answered CANCELLED: batch_job.cancelled before any poll, none from the next."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_file)
        running = await daemon(config)
        polls = running.polls()
        async with mistral(running.proxy.url) as client:
            job = await inline_batch_job(client)
            cancelled = sim.advance("batch_jobs", job.id, "CANCELLED")
            cancel = {"method": "POST", "path": f"/v1/batch/jobs/{job.id}/cancel"}
            sim.add_fault(kind="status", match=cancel, status=200, body=cancelled)
            asked = await client.batch.jobs.cancel_async(job_id=job.id)
            delivered = await asyncio.to_thread(receiver.wait_delivered, 2, 30)
            assert running.polls() == polls
        await running.close()
        assert asked.status == "CANCELLED"
        assert [(r.json()["type"], r.json()["id"]) for r in delivered] == [
            ("batch_job.created", polled_id("batch_job.created", job.id, int(T0))),
            ("batch_job.cancelled", polled_id("batch_job.cancelled", job.id, int(T0))),
        ]
        assert await next_poll(config) == []
    assert len(receiver.delivered()) == 2


async def test_a_cancel_through_the_proxy_is_announced_once_by_the_poll_that_sees_it(
    store_file: str, daemon: Any
) -> None:
    """Cancel answered CANCELLATION_REQUESTED: no event yet; CANCELLED comes once, from polling."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        running = await daemon(config_for(server, receiver, store_file, active="0.2s"))
        async with mistral(running.proxy.url) as client:
            job = await inline_batch_job(client)
            asked = await client.batch.jobs.cancel_async(job_id=job.id)
        store = running.app.store

        def status() -> str | None:
            row = store.load_resources("default", "batch_jobs", [job.id]).get(job.id)
            return row.status if row is not None else None

        await eventually(lambda: status() == "CANCELLATION_REQUESTED")
        sim.advance("batch_jobs", job.id, "CANCELLED")
        delivered = await asyncio.to_thread(receiver.wait_delivered, 2, 30)
    assert asked.status == "CANCELLATION_REQUESTED"
    assert [r.json()["type"] for r in delivered] == ["batch_job.created", "batch_job.cancelled"]
    assert len(receiver.delivered()) == 2


@pytest.mark.filterwarnings("ignore:.*DEPRECATED:DeprecationWarning")  # the SDK's own
async def test_library_calls_through_the_proxy_are_announced_at_once(
    store_url: str, daemon: Any
) -> None:
    """Libraries made and deleted, documents uploaded and deleted: delivered before any poll,
    with polling's ids, and the next poll announces none of them again."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_url)
        running = await daemon(config)
        polls = running.polls()
        async with mistral(running.proxy.url) as client:
            libraries, documents = client.beta.libraries, client.beta.libraries.documents
            kept = await libraries.create_async(name="Manuals")
            guide = await documents.upload_async(
                library_id=kept.id, file={"file_name": "guide.md", "content": b"# guide\n"}
            )
            old = await documents.upload_async(
                library_id=kept.id, file={"file_name": "old.md", "content": b"# old\n"}
            )
            await documents.delete_async(library_id=kept.id, document_id=old.id)
            gone = await libraries.create_async(name="Scratch")
            note = await documents.upload_async(
                library_id=gone.id, file={"file_name": "note.md", "content": b"# note\n"}
            )
            await libraries.delete_async(library_id=gone.id)
            delivered = await asyncio.to_thread(receiver.wait_delivered, 8, 30)
            assert running.polls() == polls
        await running.close()
        created = int(T0)
        assert sorted((r.json()["type"], r.json()["id"]) for r in delivered) == sorted(
            (t, polled_id(t, rid, created))
            for t, rid in (
                ("library.created", kept.id),
                ("library_document.uploaded", guide.id),
                ("library_document.uploaded", old.id),
                ("library_document.deleted", old.id),
                ("library.created", gone.id),
                ("library_document.uploaded", note.id),
                ("library_document.deleted", note.id),
                ("library.deleted", gone.id),
            )
        )
        assert await next_poll(config) == []


@pytest.mark.filterwarnings("ignore:.*DEPRECATED:DeprecationWarning")  # the SDK's own
async def test_a_reprocess_through_the_proxy_wakes_polling_for_its_new_outcome(
    store_file: str, daemon: Any
) -> None:
    """An upload and a reprocess through the proxy: each outcome is announced by the woken
    polling, the second with a new id."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        running = await daemon(config_for(server, receiver, store_file, active="0.2s"))
        store = running.app.store
        async with mistral(running.proxy.url) as client:
            library = await client.beta.libraries.create_async(name="Manuals")
            documents = client.beta.libraries.documents
            doc = await documents.upload_async(
                library_id=library.id, file={"file_name": "guide.md", "content": b"# guide\n"}
            )
            await asyncio.to_thread(receiver.wait_delivered, 2, 30)
            sim.advance_document(library.id, doc.id, "done")
            await asyncio.to_thread(receiver.wait_delivered, 3, 30)
            await documents.reprocess_async(library_id=library.id, document_id=doc.id)
            key = f"{library.id}/{doc.id}"

            def reopened() -> bool:
                row = store.load_resources("default", "libraries", [key]).get(key)
                return row is not None and row.status == "todo"

            await eventually(reopened)
            sim.advance_document(library.id, doc.id, "done")
            delivered = await asyncio.to_thread(receiver.wait_delivered, 4, 30)
    outcomes = [r.json() for r in delivered if r.json()["type"] == "library_document.processed"]
    assert [o["data"]["id"] for o in outcomes] == [doc.id, doc.id]
    assert outcomes[0]["id"] != outcomes[1]["id"]


async def test_a_batch_job_deleted_through_the_proxy_is_announced_at_once(
    store_file: str, daemon: Any
) -> None:
    """DELETE /v1/batch/jobs/{id}: batch_job.deleted before any poll, none from the next."""
    sim = frozen(api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_file)
        running = await daemon(config)
        polls = running.polls()
        async with mistral(running.proxy.url) as client:
            job = await inline_batch_job(client)
            answer = await client.batch.jobs.delete_async(job_id=job.id)
            delivered = await asyncio.to_thread(receiver.wait_delivered, 2, 30)
            assert running.polls() == polls
        await running.close()
        assert answer.deleted is True
        assert [(r.json()["type"], r.json()["id"]) for r in delivered] == [
            ("batch_job.created", polled_id("batch_job.created", job.id, int(T0))),
            ("batch_job.deleted", polled_id("batch_job.deleted", job.id, int(T0))),
        ]
        assert await next_poll(config) == []
    assert len(receiver.delivered()) == 2


async def test_workflow_runs_executed_and_terminated_through_the_proxy_are_announced_at_once(
    store_url: str, daemon: Any
) -> None:
    """Execute (by name, by registration), terminate: at once, polling's ids; none twice."""
    sim = frozen(api_key=KEY)
    (digest,) = [w for w in sim.workflows.registered() if w["name"] == "document-digest"]
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        config = config_for(server, receiver, store_url)
        running = await daemon(config)
        polls = running.polls()
        async with mistral(running.proxy.url) as client:
            first = await client.workflows.execute_workflow_async(
                workflow_identifier="nightly-report", input={"day": "mon"}
            )
            with pytest.warns(DeprecationWarning, match="DEPRECATED"):  # the API says so too
                second = await client.workflows.execute_workflow_registration_async(
                    workflow_registration_id=digest["registration_id"]
                )
            await client.workflows.executions.terminate_workflow_execution_async(
                execution_id=first.execution_id
            )
            delivered = await asyncio.to_thread(receiver.wait_delivered, 3, 30)
            assert running.polls() == polls
        await running.close()
        started = int(T0)
        seen = [(r.json()["type"], r.json()["id"]) for r in delivered]
        # two runs are two resources: their events may arrive in either order, a run's own in order
        assert sorted(seen) == sorted(
            [
                ("workflow_run.started", polled_id("workflow_run.started", first.run_id, started)),
                ("workflow_run.started", polled_id("workflow_run.started", second.run_id, started)),
                (
                    "workflow_run.terminated",
                    polled_id("workflow_run.terminated", first.run_id, started),
                ),
            ]
        )
        first_started = (
            "workflow_run.started",
            polled_id("workflow_run.started", first.run_id, started),
        )
        assert seen.index(first_started) < [t for t, _ in seen].index("workflow_run.terminated")
        terminated = next(
            r for r in delivered if r.json()["type"] == "workflow_run.terminated"
        ).json()["data"]
        assert (terminated["execution_id"], terminated["status"]) == (
            first.execution_id,
            "TERMINATED",
        )
        assert await next_poll(config) == []
    assert len(receiver.delivered()) == 3


async def test_a_workflow_cancelled_through_the_proxy_is_announced_once_by_polling(
    store_file: str, daemon: Any
) -> None:
    """Cancel (204): no event at once, the source polls soon, canceled comes once from polling."""
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=3, api_key=KEY)
    with SimulatorServer(sim) as server, WebhookReceiver() as receiver:
        running = await daemon(config_for(server, receiver, store_file, active="0.2s"))
        async with mistral(running.proxy.url) as client:
            run = await client.workflows.execute_workflow_async(
                workflow_identifier="nightly-report"
            )
            await asyncio.to_thread(receiver.wait_delivered, 1, 30)
            await client.workflows.executions.cancel_workflow_execution_async(
                execution_id=run.execution_id
            )
        now["t"] += 2  # the workflow handles the cancellation within a second
        delivered = await asyncio.to_thread(receiver.wait_delivered, 2, 30)
    assert [(r.json()["type"], r.json()["data"]["run_id"]) for r in delivered] == [
        ("workflow_run.started", run.run_id),
        ("workflow_run.canceled", run.run_id),
    ]
    assert len(receiver.delivered()) == 2
