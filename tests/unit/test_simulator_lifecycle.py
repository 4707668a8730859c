"""The simulator's pure lifecycle functions: planning, reading and rewriting timelines."""

from __future__ import annotations

from typing import get_args

import pytest

from poller.simulator import lifecycle, schemas
from poller.simulator.errors import InvalidRequest
from poller.simulator.lifecycle import BATCH, FINE_TUNING

T0 = 1_000.0


@pytest.mark.parametrize(
    ("lc", "outcome", "expected"),
    [
        (BATCH, "SUCCESS", [("QUEUED", 0), ("RUNNING", 2), ("SUCCESS", 7)]),
        (BATCH, "FAILED", [("QUEUED", 0), ("RUNNING", 2), ("FAILED", 7)]),
        (BATCH, "TIMEOUT_EXCEEDED", [("QUEUED", 0), ("RUNNING", 2), ("TIMEOUT_EXCEEDED", 7)]),
        (
            BATCH,
            "CANCELLED",
            [("QUEUED", 0), ("RUNNING", 2), ("CANCELLATION_REQUESTED", 7), ("CANCELLED", 10)],
        ),
        (
            FINE_TUNING,
            "SUCCESS",
            [("QUEUED", 0), ("VALIDATING", 3), ("VALIDATED", 6), ("RUNNING", 9), ("SUCCESS", 17)],
        ),
        (
            FINE_TUNING,
            "FAILED_VALIDATION",
            [("QUEUED", 0), ("VALIDATING", 3), ("FAILED_VALIDATION", 6)],
        ),
    ],
)
def test_schedule_plans_default_phases(
    lc: lifecycle.Lifecycle, outcome: str, expected: list[tuple[str, float]]
) -> None:
    """A new job's timeline goes through every phase of its outcome with default durations."""
    timeline = lifecycle.schedule(lc, "QUEUED", T0, outcome, lc.durations)
    assert timeline == [(status, T0 + at) for status, at in expected]


def test_schedule_holds_in_validated() -> None:
    """With hold, a fine-tuning timeline stops in VALIDATED (auto_start false)."""
    timeline = lifecycle.schedule(
        FINE_TUNING, "QUEUED", T0, "SUCCESS", FINE_TUNING.durations, hold=True
    )
    assert timeline[-1] == ("VALIDATED", T0 + 6)


@pytest.mark.parametrize(
    ("t", "status"),
    [(T0 - 5, "QUEUED"), (T0, "QUEUED"), (T0 + 1.99, "QUEUED"), (T0 + 2, "RUNNING"),
     (T0 + 6.5, "RUNNING"), (T0 + 7, "SUCCESS"), (T0 + 1e6, "SUCCESS")],
)  # fmt: skip
def test_status_at(t: float, status: str) -> None:
    """The status at a moment is the last one entered at or before it."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    assert lifecycle.status_at(timeline, t) == status


@pytest.mark.parametrize(
    ("t", "share"), [(T0 + 1, 0.0), (T0 + 2, 0.0), (T0 + 4.5, 0.25), (T0 + 7, 0.5), (T0 + 9, 0.5)]
)
def test_progress_is_linear_while_running(t: float, share: float) -> None:
    """Work done grows linearly over the running phase up to the reach."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    assert lifecycle.progress(timeline, t, 0.5) == pytest.approx(share)


def test_advance_moves_to_the_next_planned_status() -> None:
    """Without a target, advance enters the next planned status now and keeps later durations."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    new, outcome = lifecycle.advance(BATCH, timeline, T0 + 1, "SUCCESS", BATCH.durations)
    assert new == [("QUEUED", T0), ("RUNNING", T0 + 1), ("SUCCESS", T0 + 6)]
    assert outcome == "SUCCESS"


def test_advance_passes_through_intermediate_statuses() -> None:
    """Advancing QUEUED straight to FAILED enters RUNNING on the way, at the same moment."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    new, outcome = lifecycle.advance(BATCH, timeline, T0 + 1, "SUCCESS", BATCH.durations, "FAILED")
    assert new == [("QUEUED", T0), ("RUNNING", T0 + 1), ("FAILED", T0 + 1)]
    assert outcome == "FAILED"


def test_advance_to_cancellation_plans_the_cancel() -> None:
    """A cancellation request ends in CANCELLED after its own duration."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    new, outcome = lifecycle.advance(
        BATCH, timeline, T0 + 3, "SUCCESS", BATCH.durations, "CANCELLATION_REQUESTED"
    )
    assert new[-2:] == [("CANCELLATION_REQUESTED", T0 + 3), ("CANCELLED", T0 + 6)]
    assert outcome == "CANCELLED"


@pytest.mark.parametrize(
    ("t", "target"),
    [(T0 + 8, None), (T0 + 1, "NOPE"), (T0 + 3, "QUEUED"), (T0 + 1, "FAILED_VALIDATION")],
)
def test_advance_refuses_impossible_moves(t: float, target: str | None) -> None:
    """Final jobs, unknown statuses and backward moves are refused."""
    timeline = lifecycle.schedule(BATCH, "QUEUED", T0, "SUCCESS", BATCH.durations)
    with pytest.raises(InvalidRequest):
        lifecycle.advance(BATCH, timeline, t, "SUCCESS", BATCH.durations, target)


def test_advance_releases_a_held_job() -> None:
    """Advancing a job held in VALIDATED starts it: RUNNING now, its outcome after."""
    durations = FINE_TUNING.durations
    held = lifecycle.schedule(FINE_TUNING, "QUEUED", T0, "SUCCESS", durations, hold=True)
    new, _ = lifecycle.advance(FINE_TUNING, held, T0 + 100, "SUCCESS", durations, hold=True)
    assert new[-2:] == [("RUNNING", T0 + 100), ("SUCCESS", T0 + 108)]


def test_route_finds_the_shortest_chain() -> None:
    """route chains direct moves between two statuses."""
    assert FINE_TUNING.route("QUEUED", "RUNNING") == (
        "QUEUED",
        "VALIDATING",
        "VALIDATED",
        "RUNNING",
    )
    assert BATCH.route("SUCCESS", "RUNNING") is None


@pytest.mark.parametrize(
    ("literal", "statuses"),
    [
        (schemas.BatchJobStatus, BATCH.statuses),
        (schemas.FineTuningJobStatus, FINE_TUNING.statuses),
    ],
)
def test_request_schemas_know_every_status(literal: object, statuses: tuple[str, ...]) -> None:
    """The status values the routes accept are exactly the lifecycle's statuses."""
    assert set(get_args(literal)) == set(statuses)
