"""The diff rules, as tables: (snapshot, listing, gone) → events."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import pytest

from poller import catalog, sources
from poller.diff import diff
from poller.model import Resource
from poller.sources import BATCH_JOBS, FILES, FINE_TUNING_JOBS, MODELS, WORKFLOW_RUNS, SourceSpec

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(minutes=5)


def batch(
    id: str = "b1", status: str = "QUEUED", created_at: int = 1000, **kw: Any
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "batch",
        "status": status,
        "created_at": created_at,
        "model": "mistral-small-latest",
        "total_requests": 10,
        "output_file": None,
        "error_file": None,
        "input_files": ["f"],
        "errors": [],
        **kw,
    }


def ft(id: str = "j1", status: str = "QUEUED", created_at: int = 1000, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "object": "job",
        "status": status,
        "created_at": created_at,
        "model": "open-mistral-7b",
        "fine_tuned_model": None,
        "trained_tokens": None,
        **kw,
    }


def file(id: str = "f1", created_at: int = 1000, **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "object": "file",
        "bytes": 123,
        "created_at": created_at,
        "filename": "data.jsonl",
        "purpose": "batch",
        "sample_type": "batch_request",
        "source": "upload",
        **kw,
    }


def model(id: str = "ft:open-mistral-7b:abc:20261127:def", **kw: Any) -> dict[str, Any]:
    return {
        "id": id,
        "object": "model",
        "type": "fine-tuned",
        "created": 1000,
        "owned_by": "org-1",
        "root": "open-mistral-7b",
        "job": "j1",
        "capabilities": {},
        **kw,
    }


def run(run_id: str | None = "r1", status: str | None = "RUNNING", **kw: Any) -> dict[str, Any]:
    return {
        "workflow_name": "order-fulfilment",
        "workflow_id": None,
        "deployment_name": "default",
        "execution_id": "e1",
        "parent_execution_id": None,
        "root_execution_id": "e1",
        "run_id": run_id,
        "user_id": None,
        "status": status,
        "start_time": "2026-11-27T11:00:00.500000Z",
        "end_time": None
        if status in ("RUNNING", "RETRYING_AFTER_ERROR")
        else "2026-11-27T11:05:00Z",
        "total_duration_ms": None,
        **kw,
    }


def res(spec: SourceSpec, obj: dict[str, Any]) -> Resource:
    return spec.to_resource(obj)


def snap(spec: SourceSpec, *objs: dict[str, Any]) -> dict[str, Resource]:
    return {spec.to_resource(o).id: res(spec, o) for o in objs}


def types(
    spec: SourceSpec, before: dict[str, Resource], seen: list[dict[str, Any]], **kw: Any
) -> list[str]:
    result = diff(spec, before, [res(spec, o) for o in seen], workspace="default", now=NOW, **kw)
    return [e.type for e in result.events]


@pytest.mark.parametrize(
    ("spec", "before", "seen", "expected"),
    [
        (BATCH_JOBS, [], [batch(status="QUEUED")], ["batch_job.created"]),
        (BATCH_JOBS, [], [batch(status="SUCCESS")], ["batch_job.created", "batch_job.succeeded"]),
        (BATCH_JOBS, [], [batch(status="FAILED")], ["batch_job.created", "batch_job.failed"]),
        (BATCH_JOBS, [batch(status="RUNNING")], [batch(status="SUCCESS")], ["batch_job.succeeded"]),
        (BATCH_JOBS, [batch(status="RUNNING")], [batch(status="FAILED")], ["batch_job.failed"]),
        (
            BATCH_JOBS,
            [batch(status="RUNNING")],
            [batch(status="TIMEOUT_EXCEEDED")],
            ["batch_job.failed"],
        ),
        (BATCH_JOBS, [batch(status="RUNNING")], [batch(status="CANCELLATION_REQUESTED")], []),
        (
            BATCH_JOBS,
            [batch(status="CANCELLATION_REQUESTED")],
            [batch(status="CANCELLED")],
            ["batch_job.cancelled"],
        ),
        (BATCH_JOBS, [batch(status="QUEUED")], [batch(status="RUNNING")], []),
        (BATCH_JOBS, [batch(status="SUCCESS")], [batch(status="SUCCESS")], []),
        (BATCH_JOBS, [batch(status="SUCCESS")], [batch(status="FAILED")], []),
        (FINE_TUNING_JOBS, [], [ft()], ["fine_tuning_job.created"]),
        (
            FINE_TUNING_JOBS,
            [ft(status="RUNNING")],
            [ft(status="SUCCESS")],
            ["fine_tuning_job.succeeded"],
        ),
        (
            FINE_TUNING_JOBS,
            [ft(status="VALIDATING")],
            [ft(status="FAILED_VALIDATION")],
            ["fine_tuning_job.failed"],
        ),
        (
            FINE_TUNING_JOBS,
            [ft(status="RUNNING")],
            [ft(status="FAILED")],
            ["fine_tuning_job.failed"],
        ),
        (
            FINE_TUNING_JOBS,
            [ft(status="RUNNING")],
            [ft(status="CANCELLED")],
            ["fine_tuning_job.cancelled"],
        ),
        (FINE_TUNING_JOBS, [ft(status="QUEUED")], [ft(status="VALIDATED")], []),
        (FILES, [], [file()], ["file.uploaded"]),
        (FILES, [file()], [file()], []),
        (MODELS, [], [model()], ["model.created"]),
        (WORKFLOW_RUNS, [], [run()], ["workflow_run.started"]),
        (
            WORKFLOW_RUNS,
            [],
            [run(status="COMPLETED")],
            ["workflow_run.started", "workflow_run.completed"],
        ),
        (WORKFLOW_RUNS, [run()], [run(status="RETRYING_AFTER_ERROR")], []),
        (WORKFLOW_RUNS, [run(status="RETRYING_AFTER_ERROR")], [run()], []),
        (WORKFLOW_RUNS, [run()], [run(status="FAILED")], ["workflow_run.failed"]),
        (WORKFLOW_RUNS, [run()], [run(status="CANCELED")], ["workflow_run.canceled"]),
        (WORKFLOW_RUNS, [run()], [run(status="TERMINATED")], ["workflow_run.terminated"]),
        (WORKFLOW_RUNS, [run()], [run(status="TIMED_OUT")], ["workflow_run.timed_out"]),
        (
            WORKFLOW_RUNS,
            [run(status="RETRYING_AFTER_ERROR")],
            [run(status="CONTINUED_AS_NEW"), run(run_id="r2", start_time="2026-11-27T11:05:00Z")],
            ["workflow_run.continued_as_new", "workflow_run.started"],
        ),
        (WORKFLOW_RUNS, [run(status="COMPLETED")], [run(status="COMPLETED")], []),
        (WORKFLOW_RUNS, [run(status="TERMINATED")], [run(status="COMPLETED")], []),
    ],
)
def test_transition_table(
    spec: SourceSpec, before: list[dict[str, Any]], seen: list[dict[str, Any]], expected: list[str]
) -> None:
    """Each (remembered status, listed status) pair gives exactly the expected events."""
    assert types(spec, snap(spec, *before), seen) == expected


STARTED = ("batch_job.started",)


@pytest.mark.parametrize(
    ("before", "seen", "opted", "expected"),
    [
        ([batch(status="QUEUED")], [batch(status="RUNNING")], STARTED, ["batch_job.started"]),
        ([batch(status="QUEUED")], [batch(status="RUNNING")], (), []),
        ([], [batch(status="RUNNING")], STARTED, ["batch_job.created", "batch_job.started"]),
        ([], [batch(status="QUEUED")], STARTED, ["batch_job.created"]),
        ([], [batch(status="SUCCESS")], STARTED, ["batch_job.created", "batch_job.succeeded"]),
        ([batch(status="RUNNING")], [batch(status="RUNNING", total_requests=11)], STARTED, []),
        ([batch(status="QUEUED")], [batch(status="SUCCESS")], STARTED, ["batch_job.succeeded"]),
        ([batch(status="QUEUED")], [batch(status="CANCELLATION_REQUESTED")], STARTED, []),
        ([batch(status="SUCCESS")], [batch(status="RUNNING")], STARTED, []),
    ],
)
def test_started_is_opt_in(
    before: list[dict[str, Any]],
    seen: list[dict[str, Any]],
    opted: tuple[str, ...],
    expected: list[str],
) -> None:
    """batch_job.started comes once, when a job is seen RUNNING, only for an opted-in source."""
    assert types(BATCH_JOBS, snap(BATCH_JOBS, *before), seen, milestones=opted) == expected


def test_started_payload_and_id() -> None:
    """batch_job.started carries its fields and an id of its own, stable across detections."""
    running = res(BATCH_JOBS, batch(status="RUNNING", started_at=1010))
    queued = snap(BATCH_JOBS, batch(status="QUEUED"))
    a = diff(BATCH_JOBS, queued, [running], workspace="w", now=NOW, milestones=STARTED)
    b = diff(BATCH_JOBS, queued, [running], workspace="w", now=LATER, milestones=STARTED)
    (event,) = a.events
    assert dict(event.data) == {
        "id": "b1",
        "status": "RUNNING",
        "model": "mistral-small-latest",
        "started_at": 1010,
        "total_requests": 10,
    }
    assert event.id == "evt_rcrgecszo2lnjdtkzzw2yrk3yy" == b.events[0].id


def test_a_run_is_named_by_its_run_id_else_its_execution_and_start() -> None:
    """A run's id is its run_id, or EXECUTION@START without one; created at its start second."""
    with_run, without = WORKFLOW_RUNS.to_resource(run()), WORKFLOW_RUNS.to_resource(run(None))
    assert (with_run.id, without.id) == ("r1", "e1@2026-11-27T11:00:00.500000Z")
    assert with_run.created == 1_795_777_200 == without.created
    offset = WORKFLOW_RUNS.to_resource(run(None, start_time="2026-11-27T12:00:00.5+01:00"))
    assert offset.id == without.id
    with pytest.raises(ValueError, match="run_id"):
        WORKFLOW_RUNS.to_resource(run(None, execution_id=""))


@pytest.mark.parametrize(
    ("rid", "path"),
    [
        ("r1", "/workflows/runs/r1"),
        ("e/1@2026-11-27T11:00:00.500000Z", "/workflows/executions/e%2F1"),
        ("e@x@2026-11-27T11:00:00.500000Z", "/workflows/executions/e%40x"),
    ],
)
def test_a_run_named_without_a_run_id_is_read_through_its_execution(rid: str, path: str) -> None:
    """GET /workflows/runs/{run_id}, or the execution's path for a run without a run_id."""
    assert WORKFLOW_RUNS.item_url(rid) == path


def test_continued_as_new_runs_have_their_own_ids() -> None:
    """The runs of one execution get distinct event ids; each run's are stable."""
    first = res(WORKFLOW_RUNS, run(status="CONTINUED_AS_NEW"))
    second = res(WORKFLOW_RUNS, run(run_id="r2", start_time="2026-11-27T11:05:00Z"))
    a = diff(WORKFLOW_RUNS, {}, [first, second], workspace="w", now=NOW)
    b = diff(WORKFLOW_RUNS, {}, [second, first], workspace="w", now=LATER)
    assert [(e.type, e.resource_id) for e in a.events] == [
        ("workflow_run.started", "r1"),
        ("workflow_run.continued_as_new", "r1"),
        ("workflow_run.started", "r2"),
    ]
    assert [e.id for e in a.events] == [e.id for e in b.events]
    assert len({e.id for e in a.events}) == 3
    assert a.events[2].id == "evt_eriuqowtsr2vv6dd6opi3tzija"


RUN_STARTED = ("workflow_run.started", "evt_hsxdfingxmzmmmgvklgthbj5ue")


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("COMPLETED", ("workflow_run.completed", "evt_2wm663tb2nbkdiduu7cfzlvf54")),
        ("FAILED", ("workflow_run.failed", "evt_35wolyutpyi2c7bmlaln3cunue")),
        ("CANCELED", ("workflow_run.canceled", "evt_ecumid2j2ft3xac36b62jn6eo4")),
        ("TERMINATED", ("workflow_run.terminated", "evt_zuld4pdqgls4pxeuguvawi5p74")),
        ("TIMED_OUT", ("workflow_run.timed_out", "evt_hstagug7yr433qh72jjrqqaoga")),
        ("CONTINUED_AS_NEW", ("workflow_run.continued_as_new", "evt_xkm3knr5eebmqa6jtq2mtuapwa")),
    ],
)
def test_workflow_run_event_ids_are_pinned(status: str, outcome: tuple[str, str]) -> None:
    """Each workflow_run type's id, whether the run is seen moving first or already ended."""
    moving = diff(WORKFLOW_RUNS, {}, [res(WORKFLOW_RUNS, run())], workspace="default", now=NOW)
    ended = res(WORKFLOW_RUNS, run(status=status))
    later = diff(WORKFLOW_RUNS, snap(WORKFLOW_RUNS, run()), [ended], workspace="default", now=LATER)
    at_once = diff(WORKFLOW_RUNS, {}, [ended], workspace="default", now=LATER)
    assert [(e.type, e.id) for e in moving.events] == [RUN_STARTED]
    assert [(e.type, e.id) for e in later.events] == [outcome]
    assert [(e.type, e.id) for e in at_once.events] == [RUN_STARTED, outcome]


def test_a_run_without_a_run_id_has_pinned_ids() -> None:
    """A run answered without a run_id: its resource id and its event ids."""
    result = diff(
        WORKFLOW_RUNS,
        {},
        [res(WORKFLOW_RUNS, run(None, status="COMPLETED"))],
        workspace="default",
        now=NOW,
    )
    assert [(e.type, e.id, e.resource_id) for e in result.events] == [
        (
            "workflow_run.started",
            "evt_2hmfj2b7o45ta2zfgq5tzmjnym",
            "e1@2026-11-27T11:00:00.500000Z",
        ),
        (
            "workflow_run.completed",
            "evt_3rdg2vxtrknrg5tys4g4lltqpm",
            "e1@2026-11-27T11:00:00.500000Z",
        ),
    ]


def test_baseline_is_silent_but_recorded() -> None:
    """A silent baseline writes every item and announces nothing."""
    result = diff(
        BATCH_JOBS,
        {},
        [res(BATCH_JOBS, batch(status="SUCCESS"))],
        announce=False,
        workspace="default",
        now=NOW,
    )
    assert result.events == () and [r.id for r in result.upserts] == ["b1"]


def test_baseline_running_job_gets_its_outcome_later() -> None:
    """A job non-terminal at baseline still gets its outcome event."""
    first = diff(
        BATCH_JOBS,
        {},
        [res(BATCH_JOBS, batch(status="RUNNING"))],
        announce=False,
        workspace="default",
        now=NOW,
    )
    snapshot = {r.id: r for r in first.upserts}
    assert types(BATCH_JOBS, snapshot, [batch(status="SUCCESS")]) == ["batch_job.succeeded"]


def test_unchanged_item_writes_nothing() -> None:
    """An item identical to the snapshot produces no upsert."""
    result = diff(FILES, snap(FILES, file()), [res(FILES, file())], workspace="default", now=NOW)
    assert result.empty


def test_changed_field_is_upserted_silently() -> None:
    """A change outside the lifecycle updates the snapshot without an event."""
    result = diff(
        BATCH_JOBS,
        snap(BATCH_JOBS, batch(status="RUNNING")),
        [res(BATCH_JOBS, batch(status="RUNNING", total_requests=11))],
        workspace="default",
        now=NOW,
    )
    assert result.events == () and result.upserts[0].data["total_requests"] == 11


@pytest.mark.parametrize(
    ("spec", "obj", "expected"),
    [
        (FILES, file(), {"file.deleted": {"id": "f1"}}),
        (MODELS, model(), {"model.deleted": {"id": model()["id"], "owned_by": "org-1"}}),
        (
            BATCH_JOBS,
            batch(status="SUCCESS"),
            {
                "batch_job.deleted": {
                    "id": "b1",
                    "status": "SUCCESS",
                    "model": "mistral-small-latest",
                }
            },
        ),
        (FINE_TUNING_JOBS, ft(status="SUCCESS"), {}),
    ],
)
def test_confirmed_deletion(
    spec: SourceSpec, obj: dict[str, Any], expected: dict[str, Any]
) -> None:
    """A confirmed-gone item is dropped; files, models and batch jobs announce it."""
    result = diff(spec, snap(spec, obj), [], gone=[obj["id"]], workspace="default", now=NOW)
    assert result.removals == (obj["id"],)
    assert {e.type: dict(e.data) for e in result.events} == expected


def test_gone_but_seen_is_kept() -> None:
    """An id both listed and reported gone is not deleted."""
    result = diff(
        FILES, snap(FILES, file()), [res(FILES, file())], gone=["f1"], workspace="default", now=NOW
    )
    assert result.removals == () and result.events == ()


def test_gone_unknown_id_is_ignored() -> None:
    """A gone id that was never remembered announces nothing."""
    assert diff(FILES, {}, [], gone=["nope"], workspace="default", now=NOW).empty


def test_absence_alone_deletes_nothing() -> None:
    """An item missing from what was seen, without confirmation, stays."""
    assert diff(FILES, snap(FILES, file()), [], workspace="default", now=NOW).empty


@pytest.mark.parametrize(
    ("event_type", "obj", "payload"),
    [
        (
            "batch_job.created",
            batch(),
            {"id": "b1", "status": "QUEUED", "model": "mistral-small-latest"},
        ),
        (
            "batch_job.succeeded",
            batch(status="SUCCESS", output_file="out"),
            {"id": "b1", "status": "SUCCESS", "output_file": "out", "total_requests": 10},
        ),
        (
            "batch_job.failed",
            batch(status="FAILED", error_file="err"),
            {"id": "b1", "status": "FAILED", "error_file": "err"},
        ),
        (
            "fine_tuning_job.succeeded",
            ft(status="SUCCESS", fine_tuned_model="ft:x", trained_tokens=5),
            {"id": "j1", "status": "SUCCESS", "fine_tuned_model": "ft:x", "trained_tokens": 5},
        ),
        (
            "file.uploaded",
            file(),
            {"id": "f1", "filename": "data.jsonl", "purpose": "batch", "size": 123},
        ),
        (
            "model.created",
            model(),
            {"id": model()["id"], "owned_by": "org-1", "root": "open-mistral-7b", "job": "j1"},
        ),
        (
            "workflow_run.completed",
            run(status="COMPLETED", total_duration_ms=299500, user_id="u1"),
            {
                "execution_id": "e1",
                "run_id": "r1",
                "workflow_name": "order-fulfilment",
                "workflow_id": None,
                "status": "COMPLETED",
                "start_time": "2026-11-27T11:00:00.500000Z",
                "end_time": "2026-11-27T11:05:00Z",
                "total_duration_ms": 299500,
                "deployment_name": "default",
                "root_execution_id": "e1",
                "parent_execution_id": None,
                "user_id": "u1",
            },
        ),
    ],
)
def test_payload_fields(event_type: str, obj: dict[str, Any], payload: dict[str, Any]) -> None:
    """Payloads carry the seed's field names with the real API's values (size from bytes)."""
    spec = sources.BY_NAME[
        {
            "batch_job": "batch_jobs",
            "fine_tuning_job": "fine_tuning_jobs",
            "file": "files",
            "model": "models",
            "workflow_run": "workflow_runs",
        }[event_type.split(".")[0]]
    ]
    result = diff(spec, {}, [res(spec, obj)], workspace="default", now=NOW)
    assert {e.type: dict(e.data) for e in result.events}[event_type] == payload


def test_event_ids_are_stable_across_detections() -> None:
    """The same transition detected at another time (after a crash) keeps its id."""
    a = diff(BATCH_JOBS, {}, [res(BATCH_JOBS, batch(status="SUCCESS"))], workspace="w", now=NOW)
    b = diff(BATCH_JOBS, {}, [res(BATCH_JOBS, batch(status="SUCCESS"))], workspace="w", now=LATER)
    assert [e.id for e in a.events] == [e.id for e in b.events]
    assert len({e.id for e in a.events}) == 2


@pytest.mark.parametrize(
    ("other", "workspace"),
    [(batch(status="SUCCESS", created_at=2000), "w"), (batch(status="SUCCESS"), "other")],
)
def test_event_ids_differ_by_incarnation_and_workspace(
    other: dict[str, Any], workspace: str
) -> None:
    """A re-created id or another workspace gives other event ids."""
    a = diff(BATCH_JOBS, {}, [res(BATCH_JOBS, batch(status="SUCCESS"))], workspace="w", now=NOW)
    b = diff(BATCH_JOBS, {}, [res(BATCH_JOBS, other)], workspace=workspace, now=NOW)
    assert not {e.id for e in a.events} & {e.id for e in b.events}


def test_events_come_oldest_first() -> None:
    """New resources are announced in creation order, whatever the listing order."""
    seen = [batch(id="new", created_at=3000), batch(id="old", created_at=1000)]
    result = diff(BATCH_JOBS, {}, [res(BATCH_JOBS, o) for o in seen], workspace="w", now=NOW)
    assert [e.resource_id for e in result.events] == ["old", "new"]


def test_models_track_fine_tuned_only() -> None:
    """Base models are not tracked by the models source."""
    assert MODELS.tracks(model()) and not MODELS.tracks(
        {"id": "mistral-small-latest", "type": "base"}
    )


def test_kept_fields_are_worked_out_once_per_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turning listed items into resources does not rework the catalog for every item."""
    calls: list[Sequence[str]] = []
    real = catalog.selectors

    def counted(t: Sequence[str]) -> tuple[catalog.Selector, ...]:
        calls.append(t)
        return real(t)

    monkeypatch.setattr(catalog, "selectors", counted)
    for n in range(100):
        BATCH_JOBS.to_resource(batch(id=f"b{n}"))
    assert len(calls) <= 1
