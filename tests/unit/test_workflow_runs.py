"""The workflow-runs poller's pure parts: its time windows and its cursor."""

from __future__ import annotations

from typing import Any

import pytest

from poller.sources import WORKFLOW_RUNS
from poller.workflow_runs import source as workflow_runs

T = 1_795_777_200  # 2026-11-27T11:00:00Z


def test_no_cursor_reads_one_unfiltered_listing() -> None:
    """Before any run was seen, one listing without a time filter holds what is new."""
    assert workflow_runs.windows(None) == [{}]


def test_windows_open_an_overlap_before_the_cursor() -> None:
    """Runs started and runs ended since the cursor less the overlap, to the second, in UTC."""
    assert workflow_runs.windows(T) == [
        {"start_time_after": "2026-11-27T10:59:00Z"},
        {"end_time_after": "2026-11-27T10:59:00Z"},
    ]


def _run(start: str, end: str | None, run_id: str = "r1") -> Any:
    return WORKFLOW_RUNS.to_resource(
        {
            "run_id": run_id,
            "execution_id": "e",
            "status": "RUNNING",
            "start_time": start,
            "end_time": end,
        }
    )


@pytest.mark.parametrize(
    ("cursor", "runs", "expected"),
    [
        (None, [], None),
        (T, [], T),
        (None, [_run("2026-11-27T11:00:00.9Z", None)], T),
        (T - 100, [_run("2026-11-27T10:00:00Z", "2026-11-27T11:00:30Z")], T + 30),
        (T + 500, [_run("2026-11-27T10:00:00Z", "2026-11-27T11:00:30Z")], T + 500),
    ],
)
def test_the_cursor_is_the_newest_start_or_end_seen(
    cursor: int | None, runs: list[Any], expected: int | None
) -> None:
    """The cursor moves to the newest start or end time seen, never back."""
    assert workflow_runs.newest(cursor, runs) == expected
