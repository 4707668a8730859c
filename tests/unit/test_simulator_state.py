"""The simulator's state, driven through its Python API on a frozen clock."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from poller.simulator import Simulator
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.faults import KINDS as FAULT_KINDS

T0 = 1_750_000_000.0


@pytest.fixture
def sim() -> Simulator:
    return Simulator(clock=lambda: T0, seed=7)


def at(sim: Simulator, moment: float) -> None:
    """Move the simulator's clock forward to ``T0 + moment``."""
    sim.advance_clock(T0 + moment - sim.now())


def statuses_over(sim: Simulator, read: Any, moments: list[float]) -> list[str]:
    seen = []
    for moment in moments:
        at(sim, moment)
        seen.append(read()["status"])
    return seen


# ------------------------------------------------------------------ lifecycles


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("SUCCESS", ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "SUCCESS", "SUCCESS"]),
        ("FAILED", ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "FAILED", "FAILED"]),
        (
            "TIMEOUT_EXCEEDED",
            ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "TIMEOUT_EXCEEDED", "TIMEOUT_EXCEEDED"],
        ),
        (
            "CANCELLED",
            ["QUEUED", "QUEUED", "RUNNING", "RUNNING", "CANCELLATION_REQUESTED", "CANCELLED"],
        ),
    ],
)
def test_batch_job_lifecycle(sim: Simulator, outcome: str, expected: list[str]) -> None:
    """A batch job is QUEUED 2 s, RUNNING 5 s, then reaches its planned outcome."""
    job = sim.create_batch_job(outcome=outcome)
    read = lambda: sim.get_batch_job(job["id"])  # noqa: E731
    assert statuses_over(sim, read, [0, 1.9, 2, 6.9, 7, 10]) == expected


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        ("SUCCESS", ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "SUCCESS", "SUCCESS"]),
        ("FAILED", ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "FAILED", "FAILED"]),
        (
            "FAILED_VALIDATION",
            [
                "QUEUED",
                "VALIDATING",
                "FAILED_VALIDATION",
                "FAILED_VALIDATION",
                "FAILED_VALIDATION",
                "FAILED_VALIDATION",
            ],
        ),
        (
            "CANCELLED",
            ["QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "CANCELLATION_REQUESTED", "CANCELLED"],
        ),
    ],
)
def test_fine_tuning_job_lifecycle(sim: Simulator, outcome: str, expected: list[str]) -> None:
    """A fine-tuning job spends 3 s in each of QUEUED, VALIDATING, VALIDATED, then 8 s RUNNING."""
    job = sim.create_fine_tuning_job(outcome=outcome)
    read = lambda: sim.get_fine_tuning_job(job["id"])  # noqa: E731
    assert statuses_over(sim, read, [0, 3, 6, 9, 17, 20]) == expected


def test_phase_durations_are_configurable(sim: Simulator) -> None:
    """queued_for and running_for set how long a job stays in each phase."""
    job = sim.create_batch_job(queued_for=10, running_for=100)
    read = lambda: sim.get_batch_job(job["id"])  # noqa: E731
    assert statuses_over(sim, read, [9, 10, 109, 110]) == [
        "QUEUED",
        "RUNNING",
        "RUNNING",
        "SUCCESS",
    ]


def test_batch_job_timestamps_follow_transitions(sim: Simulator) -> None:
    """started_at is set on RUNNING and completed_at on the final status, in unix seconds."""
    job = sim.create_batch_job()
    assert (job["started_at"], job["completed_at"]) == (None, None)
    at(sim, 3)
    assert sim.get_batch_job(job["id"])["started_at"] == int(T0 + 2)
    at(sim, 7)
    done = sim.get_batch_job(job["id"])
    assert (done["started_at"], done["completed_at"]) == (int(T0 + 2), int(T0 + 7))


def test_batch_job_counters_progress(sim: Simulator) -> None:
    """completed_requests grows while running and reaches total_requests on SUCCESS."""
    job = sim.create_batch_job(total_requests=100)
    seen = []
    for moment in (1, 3, 4.5, 7):
        at(sim, moment)
        view = sim.get_batch_job(job["id"])
        assert view["completed_requests"] == view["succeeded_requests"] + view["failed_requests"]
        seen.append(view["completed_requests"])
    assert seen[0] == 0 and 0 < seen[1] < seen[2] < 100 and seen[3] == 100


def test_cancel_running_batch_job(sim: Simulator) -> None:
    """Cancelling a running batch job requests cancellation now and cancels it 3 s later."""
    job = sim.create_batch_job(total_requests=100)
    at(sim, 4)
    cancelling = sim.cancel("batch_jobs", job["id"])
    assert cancelling["status"] == "CANCELLATION_REQUESTED"
    at(sim, 7)
    cancelled = sim.get_batch_job(job["id"])
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["completed_at"] == int(T0 + 7)
    assert 0 < cancelled["completed_requests"] < 100
    assert cancelled["output_file"] is None


def test_cancel_fine_tuning_job(sim: Simulator) -> None:
    """A fine-tuning job cancelled while validating ends CANCELLED."""
    job = sim.create_fine_tuning_job()
    at(sim, 4)
    assert sim.cancel("fine_tuning_jobs", job["id"])["status"] == "CANCELLATION_REQUESTED"
    at(sim, 7)
    assert sim.get_fine_tuning_job(job["id"])["status"] == "CANCELLED"


def test_cancel_finished_job_is_refused(sim: Simulator) -> None:
    """A job in a final status cannot be cancelled."""
    job = sim.create_batch_job()
    at(sim, 8)
    with pytest.raises(InvalidRequest):
        sim.cancel("batch_jobs", job["id"])


def test_advance_moves_to_next_status(sim: Simulator) -> None:
    """advance without a status enters the next planned status now."""
    job = sim.create_batch_job()
    assert sim.advance("batch_jobs", job["id"])["status"] == "RUNNING"
    assert sim.advance("batch_jobs", job["id"])["status"] == "SUCCESS"


def test_advance_to_a_given_status(sim: Simulator) -> None:
    """advance to a final status passes through RUNNING, so started_at is set too."""
    job = sim.create_batch_job()
    view = sim.advance("batch_jobs", job["id"], "TIMEOUT_EXCEEDED")
    assert view["status"] == "TIMEOUT_EXCEEDED"
    assert view["started_at"] == view["completed_at"] == int(T0)
    assert view["error_file"] is not None


def test_advance_to_a_status_of_another_kind_is_refused(sim: Simulator) -> None:
    """Only statuses of the job's own kind are accepted."""
    job = sim.create_batch_job()
    with pytest.raises(InvalidRequest):
        sim.advance("batch_jobs", job["id"], "VALIDATED")


def test_job_without_auto_start_waits_until_started(sim: Simulator) -> None:
    """auto_start false holds a job in VALIDATED; start runs it to its outcome."""
    job = sim.create_fine_tuning_job(auto_start=False)
    at(sim, 1000)
    assert sim.get_fine_tuning_job(job["id"])["status"] == "VALIDATED"
    assert sim.start_fine_tuning_job(job["id"])["status"] == "RUNNING"
    at(sim, 1008)
    assert sim.get_fine_tuning_job(job["id"])["status"] == "SUCCESS"


def test_start_refuses_a_job_not_validated(sim: Simulator) -> None:
    """Only a VALIDATED job can be started."""
    job = sim.create_fine_tuning_job(auto_start=False)
    with pytest.raises(InvalidRequest):
        sim.start_fine_tuning_job(job["id"])


def test_fine_tuning_job_modified_at_and_events(sim: Simulator) -> None:
    """modified_at is the last transition; events list one status-updated per transition."""
    job = sim.create_fine_tuning_job()
    at(sim, 7)
    view = sim.get_fine_tuning_job(job["id"])
    assert view["modified_at"] == int(T0 + 6)
    assert [e["data"]["status"] for e in view["events"]] == ["QUEUED", "VALIDATING", "VALIDATED"]
    assert view["checkpoints"] == []


# ------------------------------------------------------------- side effects


def test_success_creates_output_file(sim: Simulator) -> None:
    """A successful batch job gets an output file made by mistral when it finishes."""
    job = sim.create_batch_job(total_requests=50)
    at(sim, 7)
    output = sim.get_file(sim.get_batch_job(job["id"])["output_file"])
    assert (output["purpose"], output["sample_type"], output["source"]) == (
        "batch",
        "batch_result",
        "mistral",
    )
    assert output["created_at"] == int(T0 + 7)


@pytest.mark.parametrize("outcome", ["FAILED", "TIMEOUT_EXCEEDED"])
def test_failure_creates_error_file(sim: Simulator, outcome: str) -> None:
    """A failed or timed-out batch job gets an error file and no output file."""
    job = sim.create_batch_job(outcome=outcome)
    at(sim, 7)
    view = sim.get_batch_job(job["id"])
    assert view["output_file"] is None
    assert sim.get_file(view["error_file"])["sample_type"] == "batch_error"


def test_output_file_appears_without_reading_the_job(sim: Simulator) -> None:
    """Files of finished jobs show up in the file list even if nobody looked at the job."""
    sim.create_batch_job()
    at(sim, 60)
    assert [f["sample_type"] for f in sim.list_files()["data"]] == ["batch_result"]


def test_fine_tuning_success_adds_model(sim: Simulator) -> None:
    """A successful fine-tuning job names its model and adds a fine-tuned model card."""
    job = sim.create_fine_tuning_job(model="open-mistral-nemo")
    at(sim, 17)
    view = sim.get_fine_tuning_job(job["id"])
    name = view["fine_tuned_model"]
    assert re.fullmatch(r"ft:open-mistral-nemo:[0-9a-f]{8}:20250615:[0-9a-f]{8}", name)
    assert view["trained_tokens"] > 0
    card = sim.get_model(name)
    assert (card["type"], card["job"], card["root"]) == (
        "fine-tuned",
        job["id"],
        "open-mistral-nemo",
    )
    assert isinstance(card["owned_by"], str) and isinstance(card["created"], int)
    assert name in [m["id"] for m in sim.list_models()["data"]]


def test_fine_tuned_model_name_carries_suffix(sim: Simulator) -> None:
    """A job's suffix goes into its model's name before the last part."""
    job = sim.create_fine_tuning_job(suffix="support")
    at(sim, 17)
    assert ":support:" in sim.get_fine_tuning_job(job["id"])["fine_tuned_model"]


def test_failed_fine_tuning_adds_no_model(sim: Simulator) -> None:
    """A failed fine-tuning job has no fine_tuned_model and adds no model."""
    job = sim.create_fine_tuning_job(outcome="FAILED")
    at(sim, 17)
    assert sim.get_fine_tuning_job(job["id"])["fine_tuned_model"] is None
    assert {m["type"] for m in sim.list_models()["data"]} == {"base"}


# ------------------------------------------------------------------ listing


def test_list_pages_are_zero_based_and_complete(sim: Simulator) -> None:
    """Pages of a listing cover every job exactly once, newest first, with an honest total."""
    for i in range(25):
        sim.create_batch_job(created_at=T0 - 100 + i)
    pages = [sim.list_batch_jobs(page=p, page_size=10) for p in range(3)]
    ids = [job["id"] for page in pages for job in page["data"]]
    assert [len(p["data"]) for p in pages] == [10, 10, 5]
    assert {p["total"] for p in pages} == {25}
    assert len(set(ids)) == 25
    created = [job["created_at"] for page in pages for job in page["data"]]
    assert created == sorted(created, reverse=True)


def test_list_filters_by_several_statuses(sim: Simulator) -> None:
    """A status filter with several values keeps jobs in any of them."""
    for outcome in ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED"):
        sim.create_batch_job(outcome=outcome, created_at=T0 - 60)
    sim.create_batch_job()
    found = sim.list_batch_jobs(status=["FAILED", "QUEUED"])
    assert sorted(j["status"] for j in found["data"]) == ["FAILED", "QUEUED"]
    assert found["total"] == 2


def test_list_created_after_is_strict(sim: Simulator) -> None:
    """created_after keeps only jobs created strictly after the moment."""
    for i in range(3):
        sim.create_batch_job(created_at=T0 - 30 + 10 * i)
    found = sim.list_batch_jobs(created_after=T0 - 20)
    assert [j["created_at"] for j in found["data"]] == [int(T0 - 10)]


def test_list_order_by_created_is_oldest_first(sim: Simulator) -> None:
    """order_by=created lists the oldest job first."""
    for i in range(3):
        sim.create_batch_job(created_at=T0 - 30 + 10 * i)
    found = sim.list_batch_jobs(order_by="created")
    assert [j["created_at"] for j in found["data"]] == [int(T0 - 30), int(T0 - 20), int(T0 - 10)]


def test_list_filters_by_model(sim: Simulator) -> None:
    """model keeps the jobs of that model only, and total counts them."""
    sim.create_batch_job(model="codestral-latest")
    sim.create_batch_job(model="mistral-small-latest")
    found = sim.list_batch_jobs(model="codestral-latest")
    assert [j["model"] for j in found["data"]] == ["codestral-latest"]
    assert found["total"] == 1


def test_fine_tuning_list_filters_by_one_status(sim: Simulator) -> None:
    """Fine-tuning jobs filter on a single status."""
    sim.create_fine_tuning_job(outcome="FAILED_VALIDATION", created_at=T0 - 100)
    sim.create_fine_tuning_job()
    found = sim.list_fine_tuning_jobs(status="FAILED_VALIDATION")
    assert [j["status"] for j in found["data"]] == ["FAILED_VALIDATION"]


def test_fine_tuning_list_filters_by_creation_window(sim: Simulator) -> None:
    """created_after and created_before bound the fine-tuning jobs listed."""
    for i in range(4):
        sim.create_fine_tuning_job(created_at=T0 - 40 + 10 * i)
    found = sim.list_fine_tuning_jobs(created_after=T0 - 40, created_before=T0 - 10)
    assert [j["created_at"] for j in found["data"]] == [int(T0 - 20), int(T0 - 30)]


def test_file_list_filters(sim: Simulator) -> None:
    """Files filter by purpose, sample_type, source and a filename search."""
    sim.create_file(filename="train.jsonl", purpose="fine-tune")
    sim.create_file(filename="input.jsonl", purpose="batch")
    sim.create_file(filename="other.jsonl", purpose="batch", source="repository")
    assert [f["filename"] for f in sim.list_files(purpose="batch", source=["upload"])["data"]] == [
        "input.jsonl"
    ]
    assert sim.list_files(sample_type=["instruct"])["total"] == 1
    assert [f["filename"] for f in sim.list_files(search="TRAIN")["data"]] == ["train.jsonl"]


def test_page_of_negative_number_is_refused(sim: Simulator) -> None:
    """page must be 0 or more and page_size 1 or more."""
    with pytest.raises(InvalidRequest):
        sim.list_batch_jobs(page=-1)
    with pytest.raises(InvalidRequest):
        sim.list_files(page_size=0)


# -------------------------------------------------------- other resources


def test_uploaded_file_reports_size_and_lines(sim: Simulator) -> None:
    """An upload's bytes is its size and num_lines its line count."""
    created = sim.upload_file("train.jsonl", b'{"a": 1}\n{"b": 2}\n', purpose="fine-tune")
    assert (created["bytes"], created["num_lines"], created["sample_type"]) == (18, 2, "instruct")
    assert sim.get_file(created["id"])["deleted"] is False


def test_delete_removes_resource(sim: Simulator) -> None:
    """A deleted file is gone: reading it raises NotFound."""
    created = sim.create_file()
    assert sim.delete_file(created["id"]) == {
        "id": created["id"],
        "object": "file",
        "deleted": True,
    }
    with pytest.raises(NotFound):
        sim.get_file(created["id"])


def test_delete_fine_tuned_model(sim: Simulator) -> None:
    """Fine-tuned models can be deleted through the API."""
    card = sim.create_model(root="mistral-small-latest")
    assert sim.delete_model(card["id"])["deleted"] is True
    assert card["id"] not in [m["id"] for m in sim.list_models()["data"]]


def test_base_models_cannot_be_deleted_through_the_api(sim: Simulator) -> None:
    """DELETE on a base model is refused."""
    with pytest.raises(InvalidRequest):
        sim.delete_model("mistral-small-latest")


def test_base_models_are_listed(sim: Simulator) -> None:
    """A new simulator lists Mistral's usual base models."""
    ids = {m["id"] for m in sim.list_models()["data"] if m["type"] == "base"}
    assert {"mistral-small-latest", "mistral-large-latest", "codestral-latest"} <= ids


def test_unknown_id_raises_not_found(sim: Simulator) -> None:
    """Reading an unknown id raises NotFound."""
    with pytest.raises(NotFound):
        sim.get_batch_job("5bd3c4b4-2f69-4c04-a9a3-6f3c5e7e1d11")


def test_reset_keeps_only_base_models(sim: Simulator) -> None:
    """reset forgets resources, faults and stats, but keeps the base models."""
    sim.create_batch_job()
    sim.create_model()
    sim.add_fault(kind="empty")
    sim.record_request("GET", "/v1/models", "/v1/models", "", "http://x/v1/models")
    assert sim.reset() == {"reset": True}
    assert sim.counts() == {
        "batch_jobs": 0,
        "fine_tuning_jobs": 0,
        "files": 0,
        "models": 5,
        "workflow_runs": 0,
    }
    assert sim.faults() == [] and sim.stats()["total"] == 0


def test_same_seed_same_ids() -> None:
    """Two simulators with the same seed hand out the same ids."""
    a, b = (Simulator(clock=lambda: T0, seed=3) for _ in range(2))
    assert a.create_batch_job()["id"] == b.create_batch_job()["id"]


def test_clock_only_moves_forward(sim: Simulator) -> None:
    """advance_clock adds to now and refuses to go back."""
    assert sim.advance_clock(5) == {"now": T0 + 5}
    with pytest.raises(InvalidRequest):
        sim.advance_clock(-1)


# --------------------------------------------------------------------- bulk


def test_bulk_seeds_finished_jobs_in_the_past(sim: Simulator) -> None:
    """bulk adds finished jobs spread over the past, listed and filtered like any other."""
    sim.bulk(batch_jobs=2000, fine_tuning_jobs=10, files=30, status="SUCCESS", span=86400)
    jobs = sim.list_batch_jobs(page_size=2000)
    assert jobs["total"] == 2000
    assert {j["status"] for j in jobs["data"]} == {"SUCCESS"}
    assert all(T0 - 86400 - 700 <= j["created_at"] < T0 for j in jobs["data"])
    assert sim.list_batch_jobs(status=["RUNNING"])["total"] == 0
    assert sim.counts() == {
        "batch_jobs": 2000,
        "fine_tuning_jobs": 10,
        "files": 30,
        "models": 5,
        "workflow_runs": 0,
    }


def test_bulk_then_new_jobs_head_query(sim: Simulator) -> None:
    """After bulk, a created_after head query finds only the newer jobs."""
    sim.bulk(batch_jobs=5000)
    fresh = sim.create_batch_job()
    found = sim.list_batch_jobs(created_after=T0 - 1, status=["QUEUED", "RUNNING"])
    assert [j["id"] for j in found["data"]] == [fresh["id"]]


def test_bulk_refuses_a_status_that_is_not_final(sim: Simulator) -> None:
    """Bulk resources are finished: a non-final status is refused."""
    with pytest.raises(InvalidRequest):
        sim.bulk(batch_jobs=1, status="RUNNING")


# ------------------------------------------------------------------- faults


def test_fault_hits_count_requests_then_goes(sim: Simulator) -> None:
    """A fault with count 2 hits the next two matching requests only."""
    sim.add_fault(kind="status", status=503, count=2)
    hits = [sim.take_fault("GET", "/v1/files") for _ in range(3)]
    assert [h.status if h else None for h in hits] == [503, 503, None]


def test_fault_matches_method_and_path_prefix(sim: Simulator) -> None:
    """A fault only hits requests whose method matches and whose path starts with its path."""
    sim.add_fault(kind="empty", match={"method": "get", "path": "/v1/files"})
    assert sim.take_fault("POST", "/v1/files") is None
    assert sim.take_fault("GET", "/v1/models") is None
    hit = sim.take_fault("GET", "/v1/files/abc")
    assert hit is not None and hit.kind == "empty"


def test_fault_with_count_minus_one_lasts_until_cleared(sim: Simulator) -> None:
    """count -1 keeps hitting until the faults are cleared."""
    sim.add_fault(kind="disconnect", count=-1)
    assert all(sim.take_fault("GET", "/v1/models") for _ in range(5))
    assert sim.clear_faults() == {"cleared": 1}
    assert sim.take_fault("GET", "/v1/models") is None


def test_faults_are_tried_in_order(sim: Simulator) -> None:
    """The first queued fault that matches is the one that hits."""
    sim.add_fault(kind="delay", seconds=0.5)
    sim.add_fault(kind="garbled")
    kinds = [f.kind for f in (sim.take_fault("GET", "/v1/x"), sim.take_fault("GET", "/v1/x")) if f]
    assert kinds == ["delay", "garbled"]


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ({"kind": "status", "status": 429, "headers": {"Retry-After": "2"}}, {"status": 429}),
        ({"kind": "delay", "seconds": 1.5}, {"seconds": 1.5}),
        ({"kind": "garbled", "body": {"data": "oops"}}, {"body": {"data": "oops"}}),
        ({"kind": "empty"}, {}),
        ({"kind": "truncate", "drop": 3}, {"drop": 3}),
        ({"kind": "disconnect"}, {}),
    ],
)
def test_each_fault_kind_is_queued(
    sim: Simulator, spec: dict[str, Any], shown: dict[str, Any]
) -> None:
    """Every fault kind is accepted and listed with its parameters."""
    fault = sim.add_fault(**spec)
    assert fault["kind"] == spec["kind"] and fault.items() >= shown.items()
    assert sim.faults() == [fault]


def test_every_fault_kind_is_covered() -> None:
    """The parametrized table above names every fault kind there is."""
    assert set(FAULT_KINDS) == {"status", "delay", "garbled", "empty", "truncate", "disconnect"}


@pytest.mark.parametrize(
    "spec",
    [{"kind": "explode"}, {"kind": "status", "status": 999}, {"kind": "empty", "count": 0},
     {"kind": "delay", "seconds": -1}, {"kind": "empty", "match": {"host": "x"}}],
)  # fmt: skip
def test_invalid_faults_are_refused(sim: Simulator, spec: dict[str, Any]) -> None:
    """Unknown kinds, bad statuses, counts, delays and match keys are refused."""
    with pytest.raises(InvalidRequest):
        sim.add_fault(**spec)


# ----------------------------------------------------------- auth and stats


@pytest.mark.parametrize(
    ("header_name", "value", "ok"),
    [
        ("Authorization", "Bearer k3y", True),
        ("Authorization", "k3y", False),
        ("Authorization", None, False),
        ("X-Api-Key", "k3y", True),
        ("X-Api-Key", "Bearer k3y", True),
    ],
)
def test_authorized(header_name: str, value: str | None, ok: bool) -> None:
    """A request needs 'Bearer <key>' (or the bare key in a custom header) when a key is set."""
    sim = Simulator(api_key="k3y", auth_header=header_name)
    assert sim.authorized(value) is ok


def test_no_key_means_no_auth() -> None:
    """Without api_key any request is authorised."""
    assert Simulator().authorized(None)


def test_stats_count_by_route_and_keep_recent(sim: Simulator) -> None:
    """Requests are counted by method and route, the last 1000 kept with their query."""
    for i in range(1001):
        sim.record_request("GET", "/v1/batch/jobs", "/v1/batch/jobs", f"page={i}", "http://x")
    stats = sim.stats()
    assert stats["total"] == 1001 and stats["by_route"] == {"GET /v1/batch/jobs": 1001}
    assert len(stats["recent"]) == 1000 and stats["recent"][-1]["query"] == "page=1000"
    sim.reset_stats()
    assert sim.stats()["total"] == 0


# ----------------------------------------------------------------- activity


def _poll(sim: Simulator) -> dict[tuple[str, str], str]:
    """Everything the simulator lists, as a poller would see it: (kind, id) -> status."""
    seen: dict[tuple[str, str], str] = {}
    for job in sim.list_batch_jobs(page_size=1000)["data"]:
        seen["batch", job["id"]] = job["status"]
    for job in sim.list_fine_tuning_jobs(page_size=1000)["data"]:
        seen["fine_tuning", job["id"]] = job["status"]
    for f in sim.list_files(page_size=1000)["data"]:
        seen["file", f["id"]] = "present"
    for m in sim.list_models()["data"]:
        seen["model", m["id"]] = "present"
    return seen


def _events_over(sim: Simulator, seconds: int, every: float = 3) -> Iterator[tuple[str, str]]:
    """(kind, change) pairs a poller polling every ``every`` seconds would observe."""
    before = _poll(sim)
    moment = 0.0
    while moment < seconds:
        moment += every
        at(sim, moment)
        now = _poll(sim)
        for key, status in now.items():
            if before.get(key) != status:
                yield key[0], "created" if key not in before and status == "present" else status
        for key in before.keys() - now.keys():
            yield key[0], "deleted"
        before = now


def test_activity_produces_every_kind_of_change() -> None:
    """With activity on, a poller polling every 3 s sees every kind of change within 30 s."""
    sim = Simulator(clock=lambda: T0, seed=11, activity=True)
    seen = set(_events_over(sim, 30))
    batch = {"QUEUED", "RUNNING", "SUCCESS", "FAILED", "TIMEOUT_EXCEEDED",
             "CANCELLATION_REQUESTED", "CANCELLED"}  # fmt: skip
    fine_tuning = {"QUEUED", "VALIDATING", "VALIDATED", "RUNNING", "SUCCESS", "FAILED",
                   "FAILED_VALIDATION", "CANCELLED"}  # fmt: skip
    assert {s for k, s in seen if k == "batch"} >= batch
    assert {s for k, s in seen if k == "fine_tuning"} >= fine_tuning
    assert {
        ("file", "created"),
        ("file", "deleted"),
        ("model", "created"),
        ("model", "deleted"),
    } <= seen


def test_activity_starts_a_batch_job_each_tick() -> None:
    """Activity with every=4 creates one batch job per 4 s of simulated time."""
    sim = Simulator(clock=lambda: T0, seed=1)
    sim.set_activity(True, every=4)
    sim.advance_clock(39)
    assert sim.list_batch_jobs()["total"] == 10


def test_activity_can_be_turned_off() -> None:
    """Once activity is off, time passing starts no more jobs."""
    sim = Simulator(clock=lambda: T0, seed=1, activity=True)
    sim.set_activity(False)
    before = sim.counts()
    sim.advance_clock(60)
    assert sim.counts()["batch_jobs"] == before["batch_jobs"]


def test_demo_scenario_has_history() -> None:
    """The demo scenario starts with finished jobs, their files and a fine-tuned model."""
    sim = Simulator(clock=lambda: T0, seed=1, scenario="demo")
    statuses = {j["status"] for j in sim.list_batch_jobs()["data"]}
    assert {"SUCCESS", "FAILED", "CANCELLED"} <= statuses
    assert {m["type"] for m in sim.list_models()["data"]} == {"base", "fine-tuned"}
    assert {f["sample_type"] for f in sim.list_files()["data"]} >= {"instruct", "batch_result"}
