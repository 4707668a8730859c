"""Conformance: the simulator's real HTTP answers validate against Mistral's OpenAPI specs.

The specs are OpenAPI 3.1, so their schemas are JSON Schema 2020-12; each answer is
validated against the response schema of its operation, with ``$ref`` resolved
through a registry over the whole spec. Answers must also not invent fields the
schema does not name. The specs are kept in ``tests/data/openapi`` (see its README);
``$POLLER_REFERENCE_DIR`` points the tests at another folder holding newer copies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from poller import store as store_mod
from poller import utils
from poller.mistral.client import MistralClient
from poller.polling import Settings
from poller.simulator import Simulator, SimulatorServer
from poller.sources import WORKFLOW_RUNS
from poller.workflow_runs.source import WorkflowRunPoller

CURRENT = "mistral-openapi.yaml"
FINE_TUNING = "mistral-openapi-fine-tuning-2026-07-06.yaml"
T0 = 1_750_000_000.0
UNKNOWN_ID = "5bd3c4b4-2f69-4c04-a9a3-6f3c5e7e1d11"

# Mistral's error object: the specs do not describe it, so it is written down here
MISTRAL_ERROR = {
    "type": "object",
    "properties": {
        "object": {"const": "error"},
        "message": {"type": "string"},
        "type": {"type": "string"},
        "param": {"type": ["string", "null"]},
        "code": {"type": ["string", "null"]},
    },
    "required": ["object", "message", "type", "param", "code"],
    "additionalProperties": False,
}


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML 1.1 reads ``1e-08`` (no dot) as a string; the specs mean a number (YAML 1.2)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9]+(?:\.[0-9]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


SPECS = Path(__file__).resolve().parents[1] / "data" / "openapi"


def _reference_dir() -> Path:
    return Path(os.environ.get("POLLER_REFERENCE_DIR") or SPECS)


class Spec:
    """One OpenAPI document, able to validate answers against its schemas."""

    def __init__(self, path: Path) -> None:
        with path.open() as f:
            self.doc: dict[str, Any] = yaml.load(f, Loader=_Loader)
        self.uri = f"urn:mistral:{path.name}"
        resource = Resource.from_contents(self.doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource(self.uri, resource)

    def validate(self, answer: Any, pointer: str) -> None:
        """Validate ``answer`` against the schema at JSON pointer ``pointer`` of the spec."""
        validator = Draft202012Validator(
            {"$ref": f"{self.uri}#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

    def response(self, answer: Any, path: str, method: str) -> None:
        """Validate ``answer`` against the 200 response schema of ``method path``."""
        escaped = path.replace("~", "~0").replace("/", "~1")
        pointer = f"/paths/{escaped}/{method}/responses/200/content/application~1json/schema"
        self.validate(answer, pointer)

    def component(self, answer: Any, name: str) -> None:
        self.validate(answer, f"/components/schemas/{name}")

    def fields(self, name: str) -> set[str]:
        return set(self.doc["components"]["schemas"][name]["properties"])


@pytest.fixture(scope="module")
def specs() -> dict[str, Spec]:
    folder = _reference_dir()
    return {"current": Spec(folder / CURRENT), "fine_tuning": Spec(folder / FINE_TUNING)}


@pytest.fixture(scope="module")
def current(specs: dict[str, Spec]) -> Spec:
    return specs["current"]


@pytest.fixture(scope="module")
def old(specs: dict[str, Spec]) -> Spec:
    return specs["fine_tuning"]


def _populate(sim: Simulator) -> None:
    """Jobs in every status at T0 (the clock stays there), with their files and models."""
    batch = [("SUCCESS", 100), ("FAILED", 100), ("TIMEOUT_EXCEEDED", 100), ("CANCELLED", 100),
             ("CANCELLED", 8.5), ("SUCCESS", 4), ("SUCCESS", 1)]  # fmt: skip
    for outcome, ago in batch:
        sim.create_batch_job(outcome=outcome, created_at=T0 - ago, metadata={"team": "a"})
    fine_tuning = [("SUCCESS", 100), ("FAILED", 100), ("FAILED_VALIDATION", 100),
                   ("CANCELLED", 100), ("CANCELLED", 18.5), ("SUCCESS", 10), ("SUCCESS", 7),
                   ("SUCCESS", 4), ("SUCCESS", 1)]  # fmt: skip
    for outcome, ago in fine_tuning:
        sim.create_fine_tuning_job(outcome=outcome, created_at=T0 - ago, suffix="s")
    sim.create_fine_tuning_job(auto_start=False, created_at=T0 - 100)
    sim.create_file(purpose="batch")
    sim.create_file(purpose="ocr", mimetype="application/pdf", filename="scan.pdf")
    sim.create_model(root="mistral-small-latest")
    runs = sim.workflows
    for outcome, ago, running in [("COMPLETED", 100, 10), ("FAILED", 90, 10), ("TIMED_OUT", 80, 10),
                                  ("COMPLETED", 10, 100), ("COMPLETED", 70, 5)]:  # fmt: skip
        runs.create_run(outcome=outcome, start_time=T0 - ago, running_for=running)
    runs.create_run(outcome="COMPLETED", continues=1, start_time=T0 - 60, running_for=10)
    runs.create_run(start_time=T0 - 5, retrying_at=4, running_for=100)
    for ended in ("CANCELED", "TERMINATED"):
        run = runs.create_run(start_time=T0 - 50, running_for=100, user_id="u-1")
        runs.advance(run["run_id"], ended)
    _populate_libraries(sim)


def _populate_libraries(sim: Simulator) -> None:
    """Two libraries; documents in every status a pass goes through, and one reprocessed."""
    manuals = sim.create_library(name="Manuals", created_at=T0 - 1000)
    sim.create_library(name="Empty", description="nothing yet", owner_type="User")
    for outcome, ago in (("done", 100), ("error", 100), ("missing_content", 100), ("done", 2),
                         ("done", 0)):  # fmt: skip
        sim.add_document(manuals["id"], outcome=outcome, created_at=T0 - ago)
    reprocessed = sim.add_document(manuals["id"], name="again.md", created_at=T0 - 100)
    sim.reprocess_document(manuals["id"], reprocessed["id"])


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    sim = Simulator(clock=lambda: T0, seed=9)
    _populate(sim)
    return sim


@pytest.fixture(scope="module")
def client(simulator: Simulator) -> Iterator[httpx.Client]:
    with SimulatorServer(simulator) as server, httpx.Client(base_url=server.url) as c:
        yield c


def _get(client: httpx.Client, path: str, **params: Any) -> Any:
    answer = client.get(path, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _assert_no_invented_fields(items: list[dict[str, Any]], known: set[str]) -> None:
    for item in items:
        assert set(item) <= known, set(item) - known


# ------------------------------------------------------------------- batch jobs


def test_batch_job_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/batch/jobs, with every batch status represented, is a ListBatchJobsResponse."""
    answer = _get(client, "/batch/jobs")
    assert {j["status"] for j in answer["data"]} == {
        "QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED",
        "CANCELLATION_REQUESTED", "CANCELLED",
    }  # fmt: skip
    current.response(answer, "/v1/batch/jobs", "get")
    _assert_no_invented_fields(answer["data"], current.fields("BatchJob"))


def test_batch_job_get_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/batch/jobs/{id} is a BatchJob for a job in each status."""
    for job in _get(client, "/batch/jobs")["data"]:
        current.response(_get(client, f"/batch/jobs/{job['id']}"), "/v1/batch/jobs/{job_id}", "get")


def test_batch_job_create_cancel_delete_conform(client: httpx.Client, current: Spec) -> None:
    """POST, cancel and DELETE on batch jobs answer their operations' schemas."""
    body = {"endpoint": "/v1/embeddings", "model": "mistral-embed", "input_files": [UNKNOWN_ID]}
    created = client.post("/batch/jobs", json=body).json()
    current.response(created, "/v1/batch/jobs", "post")
    cancelled = client.post(f"/batch/jobs/{created['id']}/cancel").json()
    current.response(cancelled, "/v1/batch/jobs/{job_id}/cancel", "post")
    deleted = client.delete(f"/batch/jobs/{created['id']}").json()
    current.response(deleted, "/v1/batch/jobs/{job_id}", "delete")


# ------------------------------------------------------------- fine-tuning jobs


def test_fine_tuning_job_list_conforms(client: httpx.Client, old: Spec) -> None:
    """GET /v1/fine_tuning/jobs, with every status represented, is a ListFineTuningJobsResponse."""
    answer = _get(client, "/fine_tuning/jobs")
    assert {j["status"] for j in answer["data"]} == {
        "QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "FAILED_VALIDATION", "FAILED",
        "SUCCESS", "CANCELLED", "CANCELLATION_REQUESTED",
    }  # fmt: skip
    old.response(answer, "/v1/fine_tuning/jobs", "get")
    _assert_no_invented_fields(answer["data"], old.fields("CompletionFineTuningJob"))


def test_fine_tuning_job_get_conforms(client: httpx.Client, old: Spec) -> None:
    """GET /v1/fine_tuning/jobs/{id} is a CompletionFineTuningJobDetails in each status."""
    for job in _get(client, "/fine_tuning/jobs")["data"]:
        details = _get(client, f"/fine_tuning/jobs/{job['id']}")
        old.response(details, "/v1/fine_tuning/jobs/{job_id}", "get")
        old.component(details, "CompletionFineTuningJobDetails")
        _assert_no_invented_fields([details], old.fields("CompletionFineTuningJobDetails"))


def test_fine_tuning_job_create_start_cancel_conform(client: httpx.Client, old: Spec) -> None:
    """POST, start and cancel on fine-tuning jobs answer their operations' schemas."""
    body = {
        "model": "open-mistral-nemo",
        "training_files": [{"file_id": UNKNOWN_ID, "weight": 1}],
        "hyperparameters": {"training_steps": 5},
        "auto_start": False,
    }
    created = client.post("/fine_tuning/jobs", json=body).json()
    old.response(created, "/v1/fine_tuning/jobs", "post")
    old.component(created, "CompletionFineTuningJob")
    cancelled = client.post(f"/fine_tuning/jobs/{created['id']}/cancel").json()
    old.response(cancelled, "/v1/fine_tuning/jobs/{job_id}/cancel", "post")
    held = next(j for j in _get(client, "/fine_tuning/jobs", status="VALIDATED")["data"])
    started = client.post(f"/fine_tuning/jobs/{held['id']}/start").json()
    old.response(started, "/v1/fine_tuning/jobs/{job_id}/start", "post")


def test_fine_tuning_dry_run_conforms(client: httpx.Client, old: Spec) -> None:
    """A dry run answers a LegacyJobMetadata."""
    body = {"model": "open-mistral-nemo", "hyperparameters": {}}
    answer = client.post("/fine_tuning/jobs", params={"dry_run": "true"}, json=body).json()
    old.response(answer, "/v1/fine_tuning/jobs", "post")
    old.component(answer, "LegacyJobMetadata")


# ------------------------------------------------------------------------ files


def test_file_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/files, with uploads and batch output and error files, is a ListFilesResponse."""
    answer = _get(client, "/files")
    assert {f["sample_type"] for f in answer["data"]} >= {"batch_result", "batch_error"}
    current.response(answer, "/v1/files", "get")
    _assert_no_invented_fields(answer["data"], current.fields("FileSchema"))


def test_file_get_upload_delete_conform(client: httpx.Client, current: Spec) -> None:
    """Upload, GET and DELETE of a file answer their operations' schemas."""
    upload = client.post("/files", files={"file": ("a.jsonl", b"{}\n")}, data={"purpose": "batch"})
    current.response(upload.json(), "/v1/files", "post")
    file_id = upload.json()["id"]
    got = _get(client, f"/files/{file_id}")
    current.response(got, "/v1/files/{file_id}", "get")
    _assert_no_invented_fields([got], current.fields("GetFileResponse"))
    current.response(client.delete(f"/files/{file_id}").json(), "/v1/files/{file_id}", "delete")


# ----------------------------------------------------------------------- models


def test_model_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/models, with base and fine-tuned models, is a ModelList."""
    answer = _get(client, "/models")
    assert {m["type"] for m in answer["data"]} == {"base", "fine-tuned"}
    current.response(answer, "/v1/models", "get")
    base, tuned = current.fields("BaseModelCard"), current.fields("FTModelCard")
    for model in answer["data"]:
        _assert_no_invented_fields([model], base if model["type"] == "base" else tuned)


def test_model_get_and_delete_conform(client: httpx.Client, current: Spec) -> None:
    """GET /v1/models/{id} answers either card; DELETE a DeleteModelResponse."""
    models = _get(client, "/models")["data"]
    for model in models:
        current.response(_get(client, f"/models/{model['id']}"), "/v1/models/{model_id}", "get")
    tuned = next(m for m in models if m["type"] == "fine-tuned")
    deleted = client.delete(f"/models/{tuned['id']}").json()
    current.response(deleted, "/v1/models/{model_id}", "delete")


# ---------------------------------------------------------------- workflow runs

RUN_STATUSES = {"RUNNING", "COMPLETED", "FAILED", "CANCELED", "TERMINATED", "CONTINUED_AS_NEW",
                "TIMED_OUT", "RETRYING_AFTER_ERROR"}  # fmt: skip


def test_workflow_run_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/workflows/runs, every status represented, pages included, conforms."""
    answer = _get(client, "/workflows/runs", page_size=1000)
    assert {r["status"] for r in answer["executions"]} == RUN_STATUSES
    current.response(answer, "/v1/workflows/runs", "get")
    _assert_no_invented_fields(
        answer["executions"], current.fields("WorkflowExecutionWithoutResultResponse")
    )
    first = _get(client, "/workflows/runs", page_size=2, start_time_after="2020-01-01T00:00:00Z")
    assert first["next_page_token"]
    after = {"page_size": 2, "next_page_token": first["next_page_token"]}
    current.response(_get(client, "/workflows/runs", **after), "/v1/workflows/runs", "get")
    ended = _get(
        client, "/workflows/runs", end_time_after="2020-01-01T00:00:00Z", sort_by="end_time"
    )
    current.response(ended, "/v1/workflows/runs", "get")


def test_workflow_run_and_execution_get_conform(client: httpx.Client, current: Spec) -> None:
    """GET a run and an execution answer WorkflowExecutionResponse, in every status."""
    for run in _get(client, "/workflows/runs", page_size=1000)["executions"]:
        got = _get(client, f"/workflows/runs/{run['run_id']}")
        current.response(got, "/v1/workflows/runs/{run_id}", "get")
        _assert_no_invented_fields([got], current.fields("WorkflowExecutionResponse"))
        latest = _get(client, f"/workflows/executions/{run['execution_id']}")
        current.response(latest, "/v1/workflows/executions/{execution_id}", "get")


def test_workflow_execute_cancel_terminate_conform(
    client: httpx.Client, simulator: Simulator, current: Spec
) -> None:
    """Executing (by name, by registration, waiting), cancel and terminate answer their schemas."""
    executed = client.post("/workflows/document-digest/execute", json={"input": {"a": 1}})
    current.response(executed.json(), "/v1/workflows/{workflow_identifier}/execute", "post")
    waited = client.post("/workflows/document-digest/execute", json={"wait_for_result": True})
    current.response(waited.json(), "/v1/workflows/{workflow_identifier}/execute", "post")
    current.component(waited.json(), "WorkflowExecutionSyncResponse")
    registration = next(
        w["registration_id"] for w in simulator.workflows.registered() if not w["internal"]
    )
    path = "/v1/workflows/registrations/{workflow_registration_id}/execute"
    by_registration = client.post(f"/workflows/registrations/{registration}/execute", json={})
    current.response(by_registration.json(), path, "post")
    second = client.post("/workflows/nightly-report/execute", json={}).json()
    cancel = client.post(f"/workflows/executions/{executed.json()['execution_id']}/cancel")
    terminate = client.post(f"/workflows/executions/{second['execution_id']}/terminate")
    assert (cancel.status_code, cancel.content, terminate.status_code) == (204, b"", 204)


def _declared(current: Spec, template: str, url: httpx.URL) -> None:
    """Every query parameter of ``url`` is one ``GET template`` declares, its value valid."""
    declared = {p["name"]: p["schema"] for p in current.doc["paths"][template]["get"]["parameters"]}
    for name, raw in url.params.multi_items():
        assert name in declared, f"{template} does not declare {name}"
        schema = declared[name]
        types = {s.get("type") for s in schema.get("anyOf", [schema])}
        value: Any = raw
        if "boolean" in types and raw in ("true", "false"):
            value = raw == "true"
        elif "integer" in types and raw.isdigit():
            value = int(raw)
        validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
        assert not list(validator.iter_errors(value)), f"{name}={raw!r}"


async def test_what_the_runs_poller_sends_is_declared_and_answered_as_specified(
    current: Spec, tmp_path: Path
) -> None:
    """Every request the workflow-runs source sends (full listings, both windows, pages by
    token, a confirming GET) uses parameters the spec declares, and each answer conforms."""
    now = {"t": T0}
    sim = Simulator(clock=lambda: now["t"], seed=11)
    runs = sim.workflows
    ended = runs.create_run(start_time=T0 - 100, running_for=10)
    for outcome in ("COMPLETED", "FAILED", "CANCELED"):
        runs.create_run(outcome=outcome, running_for=30, user_id="u-1")
    runs.create_run(continues=1, running_for=20)
    runs.create_run(workflow_name="parallel-execution", internal=True)
    exchanges: list[tuple[httpx.URL, int, Any]] = []

    async def keep(response: httpx.Response) -> None:
        await response.aread()
        exchanges.append((response.request.url, response.status_code, response.json()))

    engine = store_mod.create_engine(f"sqlite:///{tmp_path / 'runs.db'}")
    with SimulatorServer(sim) as server:
        async with httpx.AsyncClient(base_url=server.url, event_hooks={"response": [keep]}) as http:

            def poller(reconcile: float) -> WorkflowRunPoller:
                return WorkflowRunPoller(
                    WORKFLOW_RUNS,
                    client=MistralClient(http),
                    store=store_mod.Store(engine, lambda _e: ["s"]),
                    settings=Settings(reconcile_interval=reconcile),
                    clock=lambda: utils.from_unix(now["t"]),
                    page_size=2,
                )

            await poller(3600).poll()  # the baseline: a full listing, page by page
            now["t"] += 25
            runs.create_run(outcome="TIMED_OUT", running_for=1)
            now["t"] += 5
            assert (await poller(3600).poll()).mode == "incremental"  # the two windows
            runs.expire(ended["run_id"])
            assert (await poller(0).poll()).mode == "full"  # and the expired run's GET
    engine.dispose()
    lists = [(url, answer) for url, _, answer in exchanges if url.path == "/v1/workflows/runs"]
    assert all(status == 200 for url, status, _ in exchanges if url.path == "/v1/workflows/runs")
    gets = [e for e in exchanges if e[0].path.startswith("/v1/workflows/runs/")]
    sent = {name for url, _ in lists for name in url.params}
    assert sent == {"include_internal", "page_size", "next_page_token", "start_time_after",
                    "end_time_after"}  # fmt: skip
    assert [(url.path, status) for url, status, _ in gets] == [
        (f"/v1/workflows/runs/{ended['run_id']}", 404)
    ]
    for url, answer in lists:
        _declared(current, "/v1/workflows/runs", url)
        current.response(answer, "/v1/workflows/runs", "get")
    for url, _, answer in gets:
        _declared(current, "/v1/workflows/runs/{run_id}", url)
        assert not list(Draft202012Validator(MISTRAL_ERROR).iter_errors(answer))


# -------------------------------------------------------------------- libraries


def test_library_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/libraries is a ListLibrariesResponse, paged by next_page_token."""
    answer = _get(client, "/libraries")
    assert len(answer["data"]) == 2 and answer["next_page_token"] is None
    assert "pagination" not in answer
    current.response(answer, "/v1/libraries", "get")
    _assert_no_invented_fields(answer["data"], current.fields("Library"))
    first = _get(client, "/libraries", page_size=1)
    current.response(first, "/v1/libraries", "get")
    second = _get(client, "/libraries", page_size=1, page_token=first["next_page_token"])
    current.response(second, "/v1/libraries", "get")
    assert [*first["data"], *second["data"]] == answer["data"]
    assert second["next_page_token"] is None


def test_library_list_with_the_deprecated_page_conforms(
    client: httpx.Client, current: Spec
) -> None:
    """The deprecated page parameter still pages, and answers a PaginationInfo."""
    answer = _get(client, "/libraries", page=1, page_size=1)
    current.response(answer, "/v1/libraries", "get")
    assert answer["pagination"] == {
        "total_items": 2, "total_pages": 2, "current_page": 1, "page_size": 1, "has_more": False,
    }  # fmt: skip


def test_library_create_get_delete_conform(client: httpx.Client, current: Spec) -> None:
    """POST (201), GET and DELETE of a library answer a Library."""
    created = client.post("/libraries", json={"name": "Scratch", "owner_type": "Workspace"})
    assert created.status_code == 201
    current.component(created.json(), "Library")
    library_id = created.json()["id"]
    current.response(_get(client, f"/libraries/{library_id}"), "/v1/libraries/{library_id}", "get")
    deleted = client.delete(f"/libraries/{library_id}")
    current.response(deleted.json(), "/v1/libraries/{library_id}", "delete")
    assert client.get(f"/libraries/{library_id}").status_code == 404


def _manuals(client: httpx.Client) -> str:
    return str(
        next(lib["id"] for lib in _get(client, "/libraries")["data"] if lib["name"] == "Manuals")
    )


def test_document_list_conforms(client: httpx.Client, current: Spec) -> None:
    """GET /v1/libraries/{id}/documents, with every status of a pass, is a ListDocumentsResponse."""
    answer = _get(client, f"/libraries/{_manuals(client)}/documents")
    assert {d["process_status"] for d in answer["data"]} == {
        "todo", "in_progress", "done", "error", "missing_content",
    }  # fmt: skip
    path = "/v1/libraries/{library_id}/documents"
    current.response(answer, path, "get")
    _assert_no_invented_fields(answer["data"], current.fields("Document"))
    paged = _get(client, f"/libraries/{_manuals(client)}/documents", page=2, page_size=2)
    current.response(paged, path, "get")
    assert paged["pagination"] == {
        "total_items": 6, "total_pages": 3, "current_page": 2, "page_size": 2, "has_more": False,
    }  # fmt: skip


def test_document_upload_get_status_reprocess_delete_conform(
    client: httpx.Client, current: Spec
) -> None:
    """Upload (201, then 200 for the same content), GET, status, reprocess and DELETE."""
    library_id = _manuals(client)
    base = f"/libraries/{library_id}/documents"
    files = {"file": ("guide.pdf", b"%PDF-1.4 a guide", "application/pdf")}
    upload = client.post(base, files=files)
    assert upload.status_code == 201
    current.component(upload.json(), "Document")
    again = client.post(base, files=files)
    assert again.status_code == 200 and again.json()["id"] == upload.json()["id"]
    one = f"{base}/{upload.json()['id']}"
    template = "/v1/libraries/{library_id}/documents/{document_id}"
    got = _get(client, one)
    current.response(got, template, "get")
    assert got["process_status"] == "todo" and got["mime_type"] == "application/pdf"
    current.response(_get(client, f"{one}/status"), template + "/status", "get")
    assert client.post(f"{one}/reprocess").status_code == 204
    assert client.delete(one).status_code == 204
    assert client.get(one).status_code == 404


# ----------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "path",
    [f"/batch/jobs/{UNKNOWN_ID}", f"/fine_tuning/jobs/{UNKNOWN_ID}", f"/files/{UNKNOWN_ID}",
     "/models/ft:nothing:here", f"/libraries/{UNKNOWN_ID}",
     f"/libraries/{UNKNOWN_ID}/documents/{UNKNOWN_ID}/status", f"/workflows/runs/{UNKNOWN_ID}",
     "/workflows/executions/nope"],
)  # fmt: skip
def test_not_found_is_mistral_error(client: httpx.Client, path: str, current: Spec) -> None:
    """404 answers are Mistral's error object."""
    answer = client.get(path)
    assert answer.status_code == 404
    errors = list(Draft202012Validator(MISTRAL_ERROR).iter_errors(answer.json()))
    assert not errors, errors


@pytest.mark.parametrize(
    "path",
    ["/batch/jobs?page=-1", "/batch/jobs?status=DONE", "/batch/jobs?created_after=x",
     "/fine_tuning/jobs?status=QUEUED,RUNNING", "/files?page_size=0", "/files/not-a-uuid",
     "/libraries?page_size=101", f"/libraries/{UNKNOWN_ID}/documents?page=-1",
     "/libraries/not-a-uuid", "/workflows/runs?page_size=1001", "/workflows/runs?status=DONE",
     "/workflows/runs/not-a-uuid", "/workflows/runs?start_time_after=yesterday",
     "/workflows/runs?search_key=nocolon"],
)  # fmt: skip
def test_unprocessable_is_http_validation_error(
    client: httpx.Client, path: str, current: Spec
) -> None:
    """422 answers are HTTPValidationError with at least one error."""
    answer = client.get(path)
    assert answer.status_code == 422
    current.component(answer.json(), "HTTPValidationError")
    assert answer.json()["detail"]


def test_unprocessable_body_is_http_validation_error(client: httpx.Client, current: Spec) -> None:
    """A create request with an invalid body answers an HTTPValidationError."""
    answer = client.post("/batch/jobs", json={"endpoint": "/v1/nowhere", "requests": []})
    assert answer.status_code == 422
    current.component(answer.json(), "HTTPValidationError")
