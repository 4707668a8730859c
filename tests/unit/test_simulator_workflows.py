"""The simulator's workflow runs, driven through its Python API on a hand-moved clock."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from poller.simulator import Simulator
from poller.simulator.errors import InvalidRequest, NotFound
from poller.simulator.workflows import Workflows

T0 = 1_750_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def wf(clock: Clock) -> Workflows:
    return Workflows(clock, seed=7)


def unix(text: str) -> float:
    return dt.datetime.fromisoformat(text).timestamp()


def every_run(wf: Workflows, **filters: Any) -> list[dict[str, Any]]:
    """Every run the list gives, following its page tokens two at a time."""
    found: list[dict[str, Any]] = []
    token = None
    while True:
        page = wf.list_runs(page_size=2, next_page_token=token, **filters)
        found += page["executions"]
        token = page["next_page_token"]
        if token is None:
            return found


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        ({"outcome": "COMPLETED"}, ["RUNNING", "RUNNING", "COMPLETED", "COMPLETED"]),
        ({"outcome": "FAILED"}, ["RUNNING", "RUNNING", "FAILED", "FAILED"]),
        ({"outcome": "TIMED_OUT"}, ["RUNNING", "RUNNING", "TIMED_OUT", "TIMED_OUT"]),
        (
            {"outcome": "COMPLETED", "retrying_at": 1.0},
            ["RUNNING", "RETRYING_AFTER_ERROR", "RUNNING", "COMPLETED"],
        ),
    ],
)
def test_run_status_machine(
    wf: Workflows, clock: Clock, plan: dict[str, Any], expected: list[str]
) -> None:
    """A run is RUNNING for 5 s (plus a 2 s retry spell when planned), then its outcome."""
    run = wf.create_run(**plan)
    seen = []
    for moment in (0.5, 1.5, 5.0 if "retrying_at" not in plan else 3.5, 7.0):
        clock.now = T0 + moment
        seen.append(wf.get_run(run["run_id"])["status"])
    assert seen == expected


def test_an_ended_run_has_its_end_time_and_duration(wf: Workflows, clock: Clock) -> None:
    """end_time and total_duration_ms appear once the run has ended; result when COMPLETED."""
    run = wf.create_run(outcome="COMPLETED", running_for=4)
    assert (run["end_time"], run["total_duration_ms"], run["result"]) == (None, None, None)
    clock.now = T0 + 10
    ended = wf.get_run(run["run_id"])
    assert unix(ended["end_time"]) == T0 + 4 and ended["total_duration_ms"] == 4000
    assert ended["result"] == {"workflow": "order-fulfilment", "input": None}


def test_continued_as_new_starts_the_next_run_of_the_execution(wf: Workflows, clock: Clock) -> None:
    """CONTINUED_AS_NEW ends a run; the next run of the same execution starts at that moment."""
    first = wf.create_run(outcome="COMPLETED", continues=2, running_for=3)
    clock.now = T0 + 100
    runs = every_run(wf, order="asc")
    assert [r["status"] for r in runs] == ["CONTINUED_AS_NEW", "CONTINUED_AS_NEW", "COMPLETED"]
    assert {r["execution_id"] for r in runs} == {first["execution_id"]}
    assert len({r["run_id"] for r in runs}) == 3
    assert runs[1]["start_time"] == runs[0]["end_time"]
    assert wf.get_execution(first["execution_id"])["run_id"] == runs[2]["run_id"]


def test_an_execute_runs_a_registered_workflow(wf: Workflows, clock: Clock) -> None:
    """POST .../execute starts a run of a known workflow, by name or id; unknown ones are 404."""
    by_name = wf.execute("document-digest", input={"doc": 1})
    workflow_id = by_name["workflow_id"]
    by_id = wf.execute(workflow_id, execution_id="mine")
    assert (by_id["workflow_name"], by_id["execution_id"]) == ("document-digest", "mine")
    with pytest.raises(InvalidRequest, match="already running"):
        wf.execute("document-digest", execution_id="mine")
    with pytest.raises(NotFound):
        wf.execute("no-such-workflow")
    clock.now = T0 + 10
    assert wf.get_run(by_name["run_id"])["result"] == {
        "workflow": "document-digest",
        "input": {"doc": 1},
    }


def test_wait_for_result_answers_the_result(wf: Workflows) -> None:
    """wait_for_result completes the run at once and answers its result."""
    answer = wf.execute("nightly-report", wait_for_result=True, input={"day": "mon"})
    assert set(answer) == {"workflow_name", "execution_id", "result"}
    assert answer["result"] == {"workflow": "nightly-report", "input": {"day": "mon"}}


def test_a_registration_executes_its_workflow(wf: Workflows) -> None:
    """POST /registrations/{id}/execute runs the workflow registered under that id."""
    (digest,) = [w for w in wf.registered() if w["name"] == "document-digest"]
    run = wf.execute_registration(digest["registration_id"])
    assert run["workflow_name"] == "document-digest"
    with pytest.raises(NotFound):
        wf.execute_registration("00000000-0000-4000-8000-000000000000")


def test_cancel_ends_a_run_a_moment_later_terminate_at_once(wf: Workflows, clock: Clock) -> None:
    """A cancellation ends the run CANCELED after a second; a termination at once."""
    cancelled = wf.create_run(running_for=100)
    terminated = wf.create_run(running_for=100)
    clock.now = T0 + 10
    wf.cancel(cancelled["execution_id"])
    wf.terminate(terminated["execution_id"])
    assert wf.get_run(cancelled["run_id"])["status"] == "RUNNING"
    assert wf.get_run(terminated["run_id"])["status"] == "TERMINATED"
    clock.now = T0 + 11
    assert wf.get_run(cancelled["run_id"])["status"] == "CANCELED"
    with pytest.raises(InvalidRequest, match="not running"):
        wf.terminate(cancelled["execution_id"])


def test_advance_moves_a_run_now(wf: Workflows, clock: Clock) -> None:
    """advance moves a run to its next status, or to the one asked for."""
    run = wf.create_run(running_for=100)
    clock.now = T0 + 1
    assert wf.advance(run["run_id"], "RETRYING_AFTER_ERROR")["status"] == "RETRYING_AFTER_ERROR"
    assert wf.advance(run["run_id"])["status"] == "RUNNING"
    assert wf.advance(run["run_id"], "FAILED")["status"] == "FAILED"
    with pytest.raises(InvalidRequest, match="final status"):
        wf.advance(run["run_id"])


def test_advance_at_an_earlier_moment_is_a_move_shown_late(wf: Workflows, clock: Clock) -> None:
    """advance with ``at`` ends a run back then: listed ended only now, its end_time older."""
    run = wf.create_run(running_for=1000)
    clock.now = T0 + 300
    assert every_run(wf, end_time_after=T0) == []
    moved = wf.advance(run["run_id"], "COMPLETED", at=T0 + 100)
    assert (moved["status"], unix(moved["end_time"])) == ("COMPLETED", T0 + 100)
    assert [r["run_id"] for r in every_run(wf, end_time_after=T0 + 100)] == [run["run_id"]]
    assert every_run(wf, end_time_after=T0 + 101) == []
    for at in (T0 - 1, T0 + 301):
        with pytest.raises(InvalidRequest, match="between the run's start and now"):
            wf.advance(run["run_id"], "FAILED", at=at)


def test_time_filters_are_inclusive_and_end_filters_skip_running_runs(
    wf: Workflows, clock: Clock
) -> None:
    """start_time_after/end_time_after include the moment itself; running runs have no end."""
    ended = wf.create_run(running_for=10)
    clock.now = T0 + 5
    running = wf.create_run(running_for=100)
    clock.now = T0 + 20
    starts = every_run(wf, start_time_after=T0 + 5)
    ends = every_run(wf, end_time_after=T0 + 10)
    assert [r["run_id"] for r in starts] == [running["run_id"]]
    assert [r["run_id"] for r in ends] == [ended["run_id"]]
    assert every_run(wf, end_time_after=T0 + 10.001) == []


def test_pages_hold_still_while_runs_start(wf: Workflows, clock: Clock) -> None:
    """A page token resumes after the last run shown: new runs never shift a page."""
    made = []
    for n in range(5):
        clock.now = T0 + n
        made.append(wf.create_run(running_for=1000)["run_id"])
    first = wf.list_runs(page_size=2)
    clock.now = T0 + 10
    wf.create_run()
    second = wf.list_runs(page_size=2, next_page_token=first["next_page_token"])
    shown = [r["run_id"] for r in first["executions"] + second["executions"]]
    assert shown == made[::-1][:4]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, 2),
        ({"include_internal": False}, 1),
        ({"status": ["RUNNING"]}, 2),
        ({"status": ["COMPLETED"]}, 0),
        ({"workflow_identifier": "order-fulfilment"}, 1),
        ({"search": "parallel"}, 1),
        ({"workflow_tags": ["x"]}, 0),
        ({"deployment_name": "elsewhere"}, 0),
    ],
)
def test_list_filters(wf: Workflows, filters: dict[str, Any], expected: int) -> None:
    """Filters by internal workflow, status, name, search, tags and deployment."""
    parent = wf.create_run(running_for=50)
    wf.create_run(
        workflow_name="parallel-execution",
        internal=True,
        parent_execution_id=parent["execution_id"],
    )
    assert len(every_run(wf, **filters)) == expected


def test_a_child_run_belongs_to_its_parent_s_tree(wf: Workflows) -> None:
    """A child run names its parent and its parent's root."""
    parent = wf.create_run()
    child = wf.create_run(parent_execution_id=parent["execution_id"])
    assert child["parent_execution_id"] == parent["execution_id"]
    assert child["root_execution_id"] == parent["execution_id"]
    assert [r["run_id"] for r in every_run(wf, root_execution_id=parent["execution_id"])] == [
        child["run_id"],
        parent["run_id"],
    ]


def test_bulk_seeds_ended_runs(wf: Workflows, clock: Clock) -> None:
    """bulk adds runs that ended over the past span, listed 1000 a page."""
    wf.bulk(count=2500, status="FAILED")
    page = wf.list_runs(page_size=1000)
    assert len(page["executions"]) == 1000 and page["next_page_token"] is not None
    assert {r["status"] for r in page["executions"]} == {"FAILED"}
    assert all(unix(r["end_time"]) < clock.now for r in page["executions"])
    assert wf.counts() == 2500


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda w: w.list_runs(page_size=0), "page_size"),
        (lambda w: w.list_runs(next_page_token="nope"), "next_page_token"),
        (lambda w: w.create_run(outcome="DONE"), "outcome"),
        (lambda w: w.bulk(count=1, status="CONTINUED_AS_NEW"), "bulk status"),
    ],
)
def test_bad_requests_say_what_to_change(call: Any, message: str) -> None:
    """Invalid arguments raise InvalidRequest naming the argument."""
    with pytest.raises(InvalidRequest, match=message):
        call(Workflows(lambda: T0, seed=1))


def test_a_token_for_another_order_is_refused(wf: Workflows) -> None:
    """A next_page_token given for one sort order is refused for another."""
    for _ in range(3):
        wf.create_run()
    token = wf.list_runs(page_size=1)["next_page_token"]
    with pytest.raises(InvalidRequest, match="another sort order"):
        wf.list_runs(page_size=1, next_page_token=token, order="asc")


def test_activity_starts_and_ends_runs_of_every_outcome(clock: Clock) -> None:
    """With activity on, a minute of ticks ends runs in every outcome, children included."""
    sim = Simulator(clock=clock, seed=3, activity=True, activity_every=4.0)
    clock.now = T0 + 120
    runs = every_run(sim.workflows)
    assert {r["status"] for r in runs} >= {
        "COMPLETED",
        "FAILED",
        "CANCELED",
        "TERMINATED",
        "TIMED_OUT",
        "CONTINUED_AS_NEW",
    }
    assert any(r["parent_execution_id"] for r in runs)


def test_the_simulator_resets_and_seeds_its_runs(clock: Clock) -> None:
    """The demo scenario has runs of the past hours; reset forgets them."""
    sim = Simulator(clock=clock, seed=3, scenario="demo")
    assert {r["status"] for r in every_run(sim.workflows)} == {
        "COMPLETED",
        "FAILED",
        "CONTINUED_AS_NEW",
    }
    sim.reset()
    assert sim.workflows.counts() == 0
