"""The simulator served by uvicorn on 127.0.0.1, as an HTTP client sees it."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from poller.simulator import Simulator, SimulatorServer, bind, serve

T0 = 1_750_000_000.0
UNKNOWN_ID = "5bd3c4b4-2f69-4c04-a9a3-6f3c5e7e1d11"


@pytest.fixture(scope="module")
def server() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(clock=lambda: T0, seed=5)) as running:
        yield running


@pytest.fixture
def sim(server: SimulatorServer) -> Simulator:
    server.sim.reset()
    return server.sim


@pytest.fixture(scope="module")
def api_client(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url) as c:
        yield c


@pytest.fixture(scope="module")
def control_client(server: SimulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.root) as c:
        yield c


@pytest.fixture
def client(api_client: httpx.Client, sim: Simulator) -> httpx.Client:
    """A client of the API of a freshly reset simulator."""
    return api_client


@pytest.fixture
def control(control_client: httpx.Client, sim: Simulator) -> httpx.Client:
    """A client of the control API of a freshly reset simulator."""
    return control_client


def seed_jobs(sim: Simulator, n: int) -> list[dict[str, Any]]:
    return [sim.create_batch_job(created_at=T0 - 1000 + i) for i in range(n)]


# ------------------------------------------------------------------ listing


def test_pages_cover_every_job_once(sim: Simulator, client: httpx.Client) -> None:
    """0-based pages of batch jobs have no duplicates or gaps, and an honest total."""
    created = seed_jobs(sim, 23)
    pages = [
        client.get("/batch/jobs", params={"page": p, "page_size": 10}).json() for p in range(3)
    ]
    ids = [job["id"] for page in pages for job in page["data"]]
    assert [p["total"] for p in pages] == [23, 23, 23]
    assert [len(p["data"]) for p in pages] == [10, 10, 3]
    assert ids == [job["id"] for job in reversed(created)]


def test_page_past_the_end_is_empty(sim: Simulator, client: httpx.Client) -> None:
    """A page past the last one has no data but still the total."""
    seed_jobs(sim, 3)
    page = client.get("/batch/jobs", params={"page": 5}).json()
    assert page == {"data": [], "object": "list", "total": 3}


def test_status_filter_repeats(sim: Simulator, client: httpx.Client) -> None:
    """status=A&status=B keeps the jobs in either status."""
    for outcome in ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED"):
        sim.create_batch_job(outcome=outcome, created_at=T0 - 100)
    sim.create_batch_job()
    found = client.get("/batch/jobs?status=FAILED&status=QUEUED").json()
    assert sorted(j["status"] for j in found["data"]) == ["FAILED", "QUEUED"]


def test_created_after_filter(sim: Simulator, client: httpx.Client) -> None:
    """created_after is an ISO date-time, compared strictly."""
    seed_jobs(sim, 3)
    found = client.get("/batch/jobs", params={"created_after": "2025-06-15T14:50:01Z"}).json()
    assert [j["created_at"] for j in found["data"]] == [int(T0 - 998)]


def test_order_by_created(sim: Simulator, client: httpx.Client) -> None:
    """order_by=created lists oldest first; the default is newest first."""
    seed_jobs(sim, 3)
    oldest_first = client.get("/batch/jobs", params={"order_by": "created"}).json()["data"]
    newest_first = client.get("/batch/jobs").json()["data"]
    assert oldest_first == list(reversed(newest_first))


def test_fine_tuning_status_filter(sim: Simulator, client: httpx.Client) -> None:
    """Fine-tuning jobs filter on one status."""
    sim.create_fine_tuning_job(outcome="FAILED_VALIDATION", created_at=T0 - 100)
    sim.create_fine_tuning_job()
    found = client.get("/fine_tuning/jobs", params={"status": "QUEUED"}).json()
    assert [j["status"] for j in found["data"]] == ["QUEUED"] and found["total"] == 1


def test_file_filters(sim: Simulator, client: httpx.Client) -> None:
    """Files filter by purpose and by a search in the filename."""
    sim.create_file(filename="train.jsonl")
    sim.create_file(filename="requests.jsonl", purpose="batch")
    by_purpose = client.get("/files", params={"purpose": "batch"}).json()["data"]
    by_search = client.get("/files", params={"search": "train"}).json()["data"]
    assert [f["filename"] for f in by_purpose] == ["requests.jsonl"]
    assert [f["filename"] for f in by_search] == ["train.jsonl"]


def test_upload_get_and_delete_file(client: httpx.Client) -> None:
    """A multipart upload is listed, read with deleted false, then deleted."""
    content = b'{"messages": []}\n' * 3
    up = client.post("/files", files={"file": ("t.jsonl", content)}, data={"purpose": "fine-tune"})
    file_id = up.json()["id"]
    assert up.json()["bytes"] == len(content) and up.json()["num_lines"] == 3
    assert client.get(f"/files/{file_id}").json()["deleted"] is False
    assert client.delete(f"/files/{file_id}").json() == {
        "id": file_id,
        "object": "file",
        "deleted": True,
    }
    assert client.get(f"/files/{file_id}").status_code == 404


def test_job_lifecycle_over_http(sim: Simulator, client: httpx.Client) -> None:
    """A job created over HTTP moves on as the simulator's clock advances."""
    body = {"endpoint": "/v1/chat/completions", "input_files": [UNKNOWN_ID], "model": "m"}
    job = client.post("/batch/jobs", json=body).json()
    sim.advance_clock(7)
    done = client.get(f"/batch/jobs/{job['id']}").json()
    assert (job["status"], done["status"]) == ("QUEUED", "SUCCESS")
    assert client.get(f"/files/{done['output_file']}").status_code == 200


def test_fine_tuned_model_can_be_deleted(sim: Simulator, client: httpx.Client) -> None:
    """DELETE /v1/models/{id} removes a fine-tuned model."""
    model = sim.create_model()
    assert client.delete(f"/models/{model['id']}").json()["deleted"] is True
    assert client.get(f"/models/{model['id']}").status_code == 404


# ------------------------------------------------------------------- errors


def test_unknown_id_is_404_error_object(client: httpx.Client) -> None:
    """An unknown id answers 404 with Mistral's error object."""
    answer = client.get(f"/batch/jobs/{UNKNOWN_ID}")
    assert answer.status_code == 404
    assert answer.json() == {
        "object": "error",
        "message": f"Batch job {UNKNOWN_ID} not found",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@pytest.mark.parametrize(
    ("query", "loc", "error"),
    [
        ("page=-1", ["query", "page"], "greater_than_equal"),
        ("page_size=many", ["query", "page_size"], "int_parsing"),
        ("status=QUEUED&status=DONE", ["query", "status", 1], "literal_error"),
        ("created_after=yesterday", ["query", "created_after"], "datetime_from_date_parsing"),
        ("order_by=name", ["query", "order_by"], "literal_error"),
    ],
)
def test_invalid_parameters_are_422(
    client: httpx.Client, query: str, loc: list[Any], error: str
) -> None:
    """Invalid query parameters answer 422 with FastAPI's validation detail."""
    answer = client.get(f"/batch/jobs?{query}")
    assert answer.status_code == 422
    (detail,) = answer.json()["detail"]
    assert (detail["loc"], detail["type"]) == (loc, error) and detail["msg"]


def test_malformed_id_is_422(client: httpx.Client) -> None:
    """A job id that is not a UUID answers 422 on its path parameter."""
    answer = client.get("/fine_tuning/jobs/not-a-uuid")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_invalid_body_is_422(client: httpx.Client) -> None:
    """A batch job without an endpoint answers 422 naming the missing field."""
    answer = client.post("/batch/jobs", json={"input_files": [UNKNOWN_ID]})
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "endpoint"]


def test_unknown_route_is_404(client: httpx.Client) -> None:
    """A path the API does not have answers 404 with an error object."""
    answer = client.get("/batch/nothing")
    assert (answer.status_code, answer.json()["object"]) == (404, "error")


# ---------------------------------------------------------------- auth, FT off


@pytest.fixture(scope="module")
def secured() -> Iterator[SimulatorServer]:
    with SimulatorServer(Simulator(api_key="s3cret")) as running:
        yield running


def test_missing_key_is_401(secured: SimulatorServer) -> None:
    """Without the bearer key an API request answers 401 Unauthorized."""
    answer = httpx.get(f"{secured.url}/models")
    assert answer.status_code == 401
    assert answer.json()["message"] == "Unauthorized" and answer.json()["object"] == "error"


def test_wrong_key_is_401(secured: SimulatorServer) -> None:
    """A wrong bearer key answers 401."""
    answer = httpx.get(f"{secured.url}/models", headers={"Authorization": "Bearer nope"})
    assert answer.status_code == 401


def test_right_key_is_accepted(secured: SimulatorServer) -> None:
    """The right bearer key lets the request through."""
    answer = httpx.get(f"{secured.url}/models", headers={"Authorization": "Bearer s3cret"})
    assert answer.status_code == 200


def test_custom_auth_header() -> None:
    """auth_header names the header the key is read from."""
    sim = Simulator(api_key="k", auth_header="X-Api-Key")
    with SimulatorServer(sim) as running:
        assert httpx.get(f"{running.url}/models", headers={"X-Api-Key": "k"}).status_code == 200
        assert httpx.get(f"{running.url}/models", headers={"Authorization": "k"}).status_code == 401


def test_control_api_needs_no_key_and_is_not_counted(secured: SimulatorServer) -> None:
    """/_sim answers without a key and never shows in the stats."""
    secured.sim.reset_stats()
    assert httpx.post(f"{secured.root}/_sim/files", json={}).status_code == 200
    assert httpx.get(f"{secured.root}/_sim/stats").json()["total"] == 0


def test_fine_tuning_disabled_answers_404() -> None:
    """With fine_tuning off, every /v1/fine_tuning path answers 404."""
    sim = Simulator(fine_tuning=False)
    job = sim.create_fine_tuning_job()
    with SimulatorServer(sim) as running, httpx.Client(base_url=running.url) as c:
        answers = [c.get("/fine_tuning/jobs"), c.get(f"/fine_tuning/jobs/{job['id']}")]
        assert [a.status_code for a in answers] == [404, 404]
        assert c.get("/models").status_code == 200


# ------------------------------------------------------------------- faults


def add_fault(control: httpx.Client, **spec: Any) -> None:
    assert control.post("/_sim/faults", json=spec).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503, 401, 403, 404])
def test_status_fault(control: httpx.Client, client: httpx.Client, status: int) -> None:
    """A status fault answers its status with an error object, once."""
    add_fault(control, kind="status", status=status)
    first, second = client.get("/models"), client.get("/models")
    assert (first.status_code, second.status_code) == (status, 200)
    assert first.json()["object"] == "error"


def test_rate_limit_fault_carries_retry_after(control: httpx.Client, client: httpx.Client) -> None:
    """A 429 fault answers with its Retry-After header."""
    add_fault(control, kind="status", status=429, headers={"Retry-After": "2"})
    answer = client.get("/batch/jobs")
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "2")


def test_delay_fault_answers_late(control: httpx.Client, client: httpx.Client) -> None:
    """A delay fault holds the answer for its seconds, then answers normally."""
    add_fault(control, kind="delay", seconds=0.3)
    began = time.monotonic()
    answer = client.get("/models")
    assert answer.status_code == 200 and time.monotonic() - began >= 0.3


def test_garbled_fault_is_not_json(control: httpx.Client, client: httpx.Client) -> None:
    """A garbled fault answers 200 with a body that does not parse."""
    add_fault(control, kind="garbled")
    answer = client.get("/files")
    assert answer.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        answer.json()


def test_garbled_fault_with_body(control: httpx.Client, client: httpx.Client) -> None:
    """A garbled fault with a body answers exactly that body."""
    add_fault(control, kind="garbled", body={"data": "oops"})
    assert client.get("/files").json() == {"data": "oops"}


def test_empty_fault(sim: Simulator, control: httpx.Client, client: httpx.Client) -> None:
    """An empty fault answers a well-formed empty list."""
    seed_jobs(sim, 2)
    add_fault(control, kind="empty")
    assert client.get("/batch/jobs").json() == {"data": [], "object": "list", "total": 0}


def test_truncate_fault(sim: Simulator, control: httpx.Client, client: httpx.Client) -> None:
    """A truncate fault drops the last items of data and keeps the total."""
    seed_jobs(sim, 5)
    add_fault(control, kind="truncate", drop=2)
    page = client.get("/batch/jobs").json()
    assert (len(page["data"]), page["total"]) == (3, 5)


def test_disconnect_fault(control: httpx.Client, client: httpx.Client) -> None:
    """A disconnect fault closes the connection: the client gets a transport error."""
    add_fault(control, kind="disconnect")
    with pytest.raises(httpx.TransportError):
        client.get("/models")
    assert client.get("/models").status_code == 200


def test_fault_matches_method_and_path(control: httpx.Client, client: httpx.Client) -> None:
    """A fault matching GET /v1/files leaves other requests alone."""
    add_fault(
        control, kind="status", status=503, count=-1, match={"method": "GET", "path": "/v1/files"}
    )
    assert client.get("/models").status_code == 200
    assert client.get(f"/files/{UNKNOWN_ID}").status_code == 503
    assert control.delete("/_sim/faults").json() == {"cleared": 1}
    assert client.get("/files").status_code == 200


# -------------------------------------------------------------------- stats


def test_stats_count_by_route(sim: Simulator, client: httpx.Client, control: httpx.Client) -> None:
    """Stats count each request under its route template and keep its query."""
    job = sim.create_batch_job()
    client.get("/batch/jobs", params={"page": 0})
    client.get("/batch/jobs", params={"page": 1})
    client.get(f"/batch/jobs/{job['id']}")
    stats = control.get("/_sim/stats").json()
    assert stats["by_route"] == {"GET /v1/batch/jobs": 2, "GET /v1/batch/jobs/{id}": 1}
    assert [r["query"] for r in stats["recent"]] == ["page=0", "page=1", ""]
    assert stats["recent"][0]["url"].endswith("/v1/batch/jobs?page=0")
    control.post("/_sim/stats/reset")
    assert control.get("/_sim/stats").json()["total"] == 0


# -------------------------------------------------------------- control API


def test_control_creates_and_advances_jobs(control: httpx.Client, client: httpx.Client) -> None:
    """Jobs created over /_sim can be advanced, cancelled and deleted."""
    job = control.post("/_sim/batch_jobs", json={"outcome": "FAILED"}).json()
    advanced = control.post(f"/_sim/batch_jobs/{job['id']}/advance", json={"status": "FAILED"})
    assert advanced.json()["status"] == "FAILED"
    ft = control.post("/_sim/fine_tuning_jobs", json={}).json()
    cancel = control.post(f"/_sim/fine_tuning_jobs/{ft['id']}/cancel")
    assert cancel.json()["status"] == "CANCELLATION_REQUESTED"
    assert control.delete(f"/_sim/batch_jobs/{job['id']}").json()["deleted"] is True
    assert client.get(f"/batch/jobs/{job['id']}").status_code == 404


def test_control_clock(control: httpx.Client) -> None:
    """POST /_sim/clock moves the clock; GET /_sim/clock reads it."""
    before = control.get("/_sim/clock").json()["now"]
    moved = control.post("/_sim/clock", json={"advance": 60}).json()["now"]
    assert moved == before + 60 == control.get("/_sim/clock").json()["now"]


def test_control_bulk_and_reset(control: httpx.Client, client: httpx.Client) -> None:
    """Bulk seeds finished jobs; reset empties the simulator again."""
    control.post("/_sim/bulk", json={"batch_jobs": 300, "files": 5, "status": "SUCCESS"})
    assert client.get("/batch/jobs", params={"status": "SUCCESS"}).json()["total"] == 300
    control.post("/_sim/reset")
    assert client.get("/batch/jobs").json()["total"] == 0


def test_control_refuses_unknown_keys(control: httpx.Client) -> None:
    """A control request with a misspelt key answers 422."""
    answer = control.post("/_sim/batch_jobs", json={"outcom": "FAILED"})
    assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", "outcom"]


def test_control_activity(control: httpx.Client, client: httpx.Client) -> None:
    """POST /_sim/activity turns activity on; jobs appear as the clock moves."""
    on = control.post("/_sim/activity", json={"enabled": True, "every": 4}).json()
    control.post("/_sim/clock", json={"advance": 20})
    assert on["enabled"] is True
    assert client.get("/batch/jobs").json()["total"] >= 5
    control.post("/_sim/activity", json={"enabled": False})


# -------------------------------------------------------------------- serve


async def test_serve_runs_in_the_current_loop() -> None:
    """serve() answers inside a running loop and stops when its stop event is set."""
    ready, stop = asyncio.Event(), asyncio.Event()
    handler = signal.getsignal(signal.SIGINT)
    task = asyncio.create_task(serve(Simulator(), "127.0.0.1", 0, ready=ready, stop=stop))
    await asyncio.wait_for(ready.wait(), 5)
    assert signal.getsignal(signal.SIGINT) is handler
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_serve_answers_requests() -> None:
    """A simulator served by serve() answers API requests on its port."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    ready, stop = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(serve(Simulator(), ready=ready, stop=stop, sock=sock))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        async with httpx.AsyncClient() as c:
            answer = await c.get(f"http://127.0.0.1:{port}/v1/models")
        assert answer.status_code == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)


def test_server_url_and_root(server: SimulatorServer) -> None:
    """url is the API base URL and root the same without /v1."""
    assert server.url == f"http://127.0.0.1:{server.port}/v1"
    assert server.root == f"http://127.0.0.1:{server.port}"


async def test_serve_stops_when_cancelled() -> None:
    """Cancelling the task running serve() shuts the server down and frees its port."""
    with SimulatorServer() as probe:
        port = probe.port
    ready = asyncio.Event()
    task = asyncio.create_task(serve(Simulator(), "127.0.0.1", port, ready=ready))
    await asyncio.wait_for(ready.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with SimulatorServer(port=port) as again:
        assert again.port == port


def test_files_list_order_is_chosen_over_the_control_api(
    client: httpx.Client, control_client: httpx.Client, sim: Simulator
) -> None:
    """The files list answers newest first, oldest first or by id, with its total, as asked."""
    made = [sim.create_file(created_at=T0 - 60 * n)["id"] for n in range(5)]

    def listed() -> list[str]:
        answer = client.get("/files", params={"page_size": 3, "page": 0}).json()
        rest = client.get("/files", params={"page_size": 3, "page": 1}).json()
        assert answer["total"] == rest["total"] == 5
        return [f["id"] for f in answer["data"] + rest["data"]]

    try:
        assert control_client.get("/_sim/order").json() == {"files": "newest"}
        assert listed() == made
        assert control_client.post("/_sim/order", json={"files": "oldest"}).status_code == 200
        assert listed() == made[::-1]
        control_client.post("/_sim/order", json={"files": "none"}).raise_for_status()
        assert listed() == sorted(made)
        refused = control_client.post("/_sim/order", json={"files": "random"})
        assert refused.status_code == 400 and "newest, oldest, none" in refused.json()["message"]
    finally:
        sim.set_files_order("newest")


# ----------------------------------------------------------------- workflow runs


def test_workflow_run_controls(sim: Simulator, control: httpx.Client, client: httpx.Client) -> None:
    """/_sim/workflow_runs starts, advances, expires and bulk-seeds runs the API then lists."""
    run = control.post("/_sim/workflow_runs", json={"outcome": "FAILED", "running_for": 60})
    assert run.status_code == 200 and run.json()["status"] == "RUNNING"
    run_id = run.json()["run_id"]
    at = {"status": "TIMED_OUT", "at": sim.now()}
    moved = control.post(f"/_sim/workflow_runs/{run_id}/advance", json=at)
    assert moved.json()["status"] == "TIMED_OUT"
    assert client.get(f"/workflows/runs/{run_id}").json()["status"] == "TIMED_OUT"
    assert control.delete(f"/_sim/workflow_runs/{run_id}").json() == {
        "run_id": run_id,
        "expired": True,
    }
    assert client.get(f"/workflows/runs/{run_id}").status_code == 404
    assert control.post("/_sim/workflow_runs/bulk", json={"count": 1500}).json() == {
        "workflow_runs": 1500
    }
    assert control.get("/_sim").json()["counts"]["workflow_runs"] == 1500
    names = {w["name"] for w in control.get("/_sim/workflows").json()}
    assert names >= {"order-fulfilment", "parallel-execution"}


@pytest.mark.parametrize(
    ("body", "status"),
    [({"outcome": "DONE"}, 400), ({"outcomes": "FAILED"}, 422), ({"count": -1}, 400)],
)
def test_bad_workflow_run_controls_say_what_to_change(
    control: httpx.Client, body: dict[str, Any], status: int
) -> None:
    """An unknown outcome, a misspelt key or a negative count is refused."""
    path = "/_sim/workflow_runs/bulk" if "count" in body else "/_sim/workflow_runs"
    assert control.post(path, json=body).status_code == status


def test_runs_list_faults_keep_the_runs_shape(
    sim: Simulator, control: httpx.Client, client: httpx.Client
) -> None:
    """An empty fault on the runs list answers no runs; a truncate one drops the last runs."""
    for _ in range(3):
        sim.workflows.create_run()
    add_fault(control, kind="empty")
    assert client.get("/workflows/runs").json() == {"executions": [], "next_page_token": None}
    add_fault(control, kind="truncate", drop=2)
    assert len(client.get("/workflows/runs").json()["executions"]) == 1


def test_cancel_and_terminate_answer_no_content(sim: Simulator, client: httpx.Client) -> None:
    """Cancel and terminate answer 204; an execution no longer running answers 400."""
    run = sim.workflows.create_run(running_for=100)
    path = f"/workflows/executions/{run['execution_id']}"
    assert client.post(f"{path}/terminate").status_code == 204
    refused = client.post(f"{path}/cancel")
    assert refused.status_code == 400 and "not running" in refused.json()["message"]
    assert client.post("/workflows/executions/nope/cancel").status_code == 404
