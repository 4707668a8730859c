"""Hints: a call that changed a polled resource, read as polling would read the change."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest

from poller import hints, sources, synchronous
from poller.model import Resource

T = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)
CREATED = 1_750_000_000
JOB = {"id": "job-1", "status": "QUEUED", "created_at": CREATED, "model": "mistral-small-latest"}
FILE = {
    "id": "file-1",
    "object": "file",
    "bytes": 12,
    "created_at": CREATED,
    "filename": "a.jsonl",
    "purpose": "batch",
}


def call(method: str, path: str, answer: Any, status: int = 200) -> synchronous.Call:
    return synchronous.Call(
        method=method,
        path=path,
        request_body=b"",
        status=status,
        content_type="application/json",
        content_encoding=None,
        body=json.dumps(answer).encode(),
        started_at=T,
        finished_at=T,
    )


def known(spec: sources.SourceSpec, obj: dict[str, Any]) -> dict[str, Resource]:
    resource = spec.to_resource(obj)
    return {resource.id: resource}


@pytest.mark.parametrize(
    ("method", "path", "source", "kind", "rid"),
    [("POST", "/batch/jobs", "batch_jobs", "created", None),
     ("POST", "/batch/jobs/", "batch_jobs", "created", None),
     ("POST", "/batch/jobs/j1/cancel", "batch_jobs", "changed", "j1"),
     ("DELETE", "/batch/jobs/j1", "batch_jobs", "deleted", "j1"),
     ("POST", "/fine_tuning/jobs?dry_run=false", "fine_tuning_jobs", "created", None),
     ("POST", "/fine_tuning/jobs/j2/cancel", "fine_tuning_jobs", "changed", "j2"),
     ("POST", "/files", "files", "created", None),
     ("DELETE", "/files/f1", "files", "deleted", "f1"),
     ("delete", "/models/ft:open-mistral-7b:abc", "models", "deleted", "ft:open-mistral-7b:abc"),
     ("DELETE", "/models/ft%3Aa%2Fb%3Fc", "models", "deleted", "ft:a/b?c")],
)  # fmt: skip
def test_routes(method: str, path: str, source: str, kind: str, rid: str | None) -> None:
    """Each call that changes a polled resource has its source, kind and path id."""
    found = hints.route(method, path)
    assert found is not None
    assert (found[0].spec.name, found[0].kind, found[1]) == (source, kind, rid)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/batch/jobs"), ("POST", "/batch/jobs/j1"), ("DELETE", "/batch/jobs"),
     ("POST", "/fine_tuning/jobs/j1/start"), ("GET", "/files/f1"), ("DELETE", "/files"),
     ("POST", "/chat/completions"), ("DELETE", "/files/f1/content")],
)  # fmt: skip
def test_other_calls_take_no_route(method: str, path: str) -> None:
    """Reads, other actions and the synchronous endpoints give no hint."""
    assert hints.route(method, path) is None


def test_a_created_job_gives_the_event_polling_would() -> None:
    """POST /batch/jobs: batch_job.created with the id a poll gives it, and its snapshot row."""
    hint = hints.read(call("POST", "/batch/jobs", JOB), "default")
    assert hint is not None and hint.joins_active_set
    result = hints.plan(hint, {})
    assert [(e.type, e.id, e.timestamp) for e in result.events] == [
        ("batch_job.created", "evt_eaexlqwsamntynfiulbnwahdbe", T)
    ]
    assert result.events[0].data == {
        "id": "job-1",
        "status": "QUEUED",
        "model": "mistral-small-latest",
    }
    assert [r.id for r in result.upserts] == ["job-1"]


def test_a_created_resource_already_in_the_snapshot_announces_nothing() -> None:
    """A poll that saw the job first: the hint changes nothing."""
    hint = hints.read(call("POST", "/batch/jobs", JOB), "default")
    assert hint is not None
    assert hints.plan(hint, known(sources.BATCH_JOBS, JOB)).empty


@pytest.mark.parametrize(
    ("status", "types", "active"),
    [("CANCELLED", ["batch_job.cancelled"], False), ("CANCELLATION_REQUESTED", [], True)],
)
def test_a_cancel_is_announced_when_the_answer_says_cancelled(
    status: str, types: list[str], active: bool
) -> None:
    """POST .../cancel: batch_job.cancelled only for CANCELLED; the row takes the new status."""
    running = {**JOB, "status": "RUNNING"}
    hint = hints.read(call("POST", "/batch/jobs/job-1/cancel", {**JOB, "status": status}), "ws")
    assert hint is not None and hint.joins_active_set is active
    result = hints.plan(hint, known(sources.BATCH_JOBS, running))
    assert [e.type for e in result.events] == types
    assert [r.status for r in result.upserts] == [status]


def test_cancelled_event_id_is_pinned() -> None:
    """The cancelled event of job-1 in workspace default has the id polling gives it."""
    hint = hints.read(
        call("POST", "/batch/jobs/job-1/cancel", {**JOB, "status": "CANCELLED"}), "default"
    )
    assert hint is not None
    result = hints.plan(hint, known(sources.BATCH_JOBS, JOB))
    assert [e.id for e in result.events] == ["evt_7tuyl4rw4pko5fhjz77vo3aiwy"]


def test_a_cancel_of_a_job_the_snapshot_does_not_know_is_left_to_polling() -> None:
    """A job poller never saw is not announced by a cancel: the next poll finds it."""
    hint = hints.read(call("POST", "/batch/jobs/job-1/cancel", {**JOB, "status": "CANCELLED"}), "w")
    assert hint is not None and hints.plan(hint, {}).empty


def test_a_deleted_batch_job_is_announced_with_its_last_status() -> None:
    """DELETE /batch/jobs/{id} answering deleted: true gives batch_job.deleted, polling's id."""
    answer = {"id": "job-1", "object": "batch", "deleted": True}
    hint = hints.read(call("DELETE", "/batch/jobs/job-1", answer), "default")
    assert hint is not None
    result = hints.plan(hint, known(sources.BATCH_JOBS, {**JOB, "status": "SUCCESS"}))
    assert result.removals == ("job-1",)
    assert [(e.type, e.id, e.data) for e in result.events] == [
        (
            "batch_job.deleted",
            "evt_q6xrkn5iyntkcahgxb5mqm5vji",
            {"id": "job-1", "status": "SUCCESS", "model": "mistral-small-latest"},
        )
    ]


def test_a_confirmed_deletion_drops_the_row_with_its_event() -> None:
    """DELETE /files/{id} answering deleted: true gives file.deleted, with the polling id."""
    answer = {"id": "file-1", "object": "file", "deleted": True}
    hint = hints.read(call("DELETE", "/files/file-1", answer), "default")
    assert hint is not None
    result = hints.plan(hint, known(sources.FILES, FILE))
    assert result.removals == ("file-1",)
    assert [(e.type, e.id, e.data) for e in result.events] == [
        ("file.deleted", "evt_i2va4z2k5h2helyrva4kcbbd4q", {"id": "file-1"})
    ]
    assert hints.plan(hint, {}).empty


@pytest.mark.parametrize(
    ("method", "path", "answer", "status"),
    [("DELETE", "/files/file-1", {"id": "file-1", "deleted": False}, 200),
     ("DELETE", "/files/file-1", {"object": "error", "message": "nope"}, 404),
     ("POST", "/batch/jobs", {"object": "error", "message": "bad model"}, 400),
     ("POST", "/fine_tuning/jobs?dry_run=true", {"object": "job.metadata", "cost": 1.0}, 200),
     ("POST", "/batch/jobs/job-2/cancel", JOB, 200),
     ("POST", "/files", ["not", "an", "object"], 200),
     ("GET", "/files", {"data": []}, 200)],
)  # fmt: skip
def test_calls_that_say_nothing_give_no_hint(
    method: str, path: str, answer: Any, status: int
) -> None:
    """A failed call, an answer without the resource, or one about another id: no hint."""
    assert hints.read(call(method, path, answer, status), "default") is None


def test_a_source_nobody_polls_takes_no_hint() -> None:
    """With files not polled in the workspace, an upload gives no hint."""
    upload = call("POST", "/files", FILE)
    assert hints.read(upload, "default", polled={"batch_jobs"}) is None
    assert hints.read(upload, "default", polled={"files"}) is not None


def test_a_deleted_fine_tuned_model_gives_model_deleted() -> None:
    """DELETE /models/{id}: model.deleted with the payload polling gives it."""
    answer = {"id": "ft:m:1", "object": "model", "deleted": True}
    hint = hints.read(call("DELETE", "/models/ft:m:1", answer), "default")
    assert hint is not None and not hint.joins_active_set
    model = {"id": "ft:m:1", "created": CREATED, "owned_by": "me", "type": "fine-tuned"}
    result = hints.plan(hint, known(sources.MODELS, model))
    assert [(e.type, e.data) for e in result.events] == [
        ("model.deleted", {"id": "ft:m:1", "owned_by": "me"})
    ]


RUN = {
    "workflow_name": "order-fulfilment",
    "workflow_id": "5d4905d7-e6bb-40c7-9608-392fc1d49267",
    "deployment_name": "default",
    "execution_id": "exec-1",
    "parent_execution_id": None,
    "root_execution_id": "exec-1",
    "run_id": "1f0e6a3c-7a1b-4c61-9d0e-6f1a2b3c4d5e",
    "user_id": None,
    "status": "RUNNING",
    "start_time": "2025-06-15T15:06:40.000000Z",
    "end_time": None,
    "total_duration_ms": None,
    "result": None,
}
RUN_STARTED = 1_750_000_000


@pytest.mark.parametrize(
    ("method", "path", "kind", "rid"),
    [("POST", "/workflows/order-fulfilment/execute", "created", None),
     ("POST", "/workflows/registrations/6a0e/execute", "created", None),
     ("POST", "/workflows/executions/exec-1/terminate", "ended", "exec-1"),
     ("POST", "/workflows/executions/exec-1/cancel", "requested", "exec-1")],
)  # fmt: skip
def test_workflow_routes(method: str, path: str, kind: str, rid: str | None) -> None:
    """Executing a workflow, terminating or cancelling an execution: each has its route."""
    found = hints.route(method, path)
    assert found is not None
    assert (found[0].spec.name, found[0].kind, found[1]) == ("workflow_runs", kind, rid)


def test_an_executed_workflow_gives_the_started_event_polling_would() -> None:
    """POST .../execute: workflow_run.started, id from the run id and start time, row written."""
    hint = hints.read(call("POST", "/workflows/order-fulfilment/execute", RUN), "default")
    assert hint is not None and hint.joins_active_set
    result = hints.plan(hint, {})
    assert [(e.type, e.id, e.resource_id) for e in result.events] == [
        ("workflow_run.started", "evt_t57vdodt6wfs6dvtvple7ibybq", RUN["run_id"])
    ]
    assert result.events[0].data["execution_id"] == "exec-1"
    assert [r.id for r in result.upserts] == [RUN["run_id"]]


@pytest.mark.parametrize(
    "answer",
    [
        {**RUN, "run_id": None},
        {"workflow_name": "order-fulfilment", "execution_id": "exec-1", "result": {"ok": 1}},
    ],
    ids=["no run id", "wait_for_result"],
)
def test_an_execute_answer_without_a_run_id_is_left_to_polling(answer: dict[str, Any]) -> None:
    """Without its run id the hint could not name the run as polling does: no hint."""
    assert hints.read(call("POST", "/workflows/w/execute", answer), "default") is None


def test_a_terminate_ends_the_execution_s_running_run() -> None:
    """POST .../terminate (204, no body): workflow_run.terminated for the run that was moving."""
    other = {**RUN, "execution_id": "exec-2", "run_id": "2f0e6a3c-7a1b-4c61-9d0e-6f1a2b3c4d5e"}
    before = {
        **known(sources.WORKFLOW_RUNS, RUN),
        **known(sources.WORKFLOW_RUNS, other),
    }
    answer = call("POST", "/workflows/executions/exec-1/terminate", None, status=204)
    hint = hints.read(dataclasses.replace(answer, body=b""), "default")
    assert hint is not None and not hint.joins_active_set
    result = hints.plan(hint, before)
    assert [(e.type, e.id, e.resource_id) for e in result.events] == [
        ("workflow_run.terminated", "evt_zi7xxi3kednl7wba43chotwzim", RUN["run_id"])
    ]
    assert result.events[0].data["status"] == "TERMINATED"
    assert result.events[0].data["end_time"] == "2026-11-28T12:00:00.000000Z"
    assert [(r.id, r.status) for r in result.upserts] == [(RUN["run_id"], "TERMINATED")]


def test_a_terminate_ends_only_the_execution_s_newest_moving_run() -> None:
    """Two runs of one execution moving in the snapshot (the older one's end not seen yet):
    terminating the execution ends its current run, the newest, alone."""
    older = {**RUN, "run_id": "0f0e6a3c-7a1b-4c61-9d0e-6f1a2b3c4d5e"}
    newer = {**RUN, "start_time": "2025-06-15T16:06:40.000000Z"}
    before = {**known(sources.WORKFLOW_RUNS, older), **known(sources.WORKFLOW_RUNS, newer)}
    answer = call("POST", "/workflows/executions/exec-1/terminate", None, status=204)
    hint = hints.read(dataclasses.replace(answer, body=b""), "default")
    assert hint is not None
    result = hints.plan(hint, before)
    assert [(e.type, e.resource_id) for e in result.events] == [
        ("workflow_run.terminated", RUN["run_id"])
    ]
    assert [r.id for r in result.upserts] == [RUN["run_id"]]


def test_a_terminate_of_a_run_the_snapshot_does_not_know_is_left_to_polling() -> None:
    """An execution poller never saw moving: the terminate records nothing."""
    ended = known(sources.WORKFLOW_RUNS, {**RUN, "status": "COMPLETED"})
    answer = dataclasses.replace(
        call("POST", "/workflows/executions/exec-1/terminate", None, status=204), body=b""
    )
    hint = hints.read(answer, "default")
    assert hint is not None
    assert hints.plan(hint, {}).empty and hints.plan(hint, ended).empty


def test_a_cancel_records_nothing_but_wakes_the_source() -> None:
    """POST .../cancel: the workflow decides how it ends; its source is polled soon."""
    answer = dataclasses.replace(
        call("POST", "/workflows/executions/exec-1/cancel", None, status=204), body=b""
    )
    hint = hints.read(answer, "default")
    assert hint is not None and hint.joins_active_set
    assert hints.plan(hint, known(sources.WORKFLOW_RUNS, RUN)).empty
