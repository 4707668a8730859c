"""`poller events tail`: which seqs are new, which are still missing, what a line shows."""

from __future__ import annotations

import datetime as dt

import pytest

from poller import tail
from poller.model import Event

HOLD = 10.0


@pytest.mark.parametrize(
    ("cursor", "seqs", "now", "after", "shown"),
    [
        (tail.Cursor(5), [], 0.0, tail.Cursor(5), set()),
        (tail.Cursor(5), [6, 7], 0.0, tail.Cursor(7), {6, 7}),
        (tail.Cursor(5), [6, 8], 1.0, tail.Cursor(8, {7: 11.0}), {6, 8}),
        (tail.Cursor(5), [9], 0.0, tail.Cursor(9, {6: 10.0, 7: 10.0, 8: 10.0}), {9}),
        (tail.Cursor(8, {7: 11.0}), [7, 8, 9], 2.0, tail.Cursor(9), {7, 9}),
        (tail.Cursor(8, {7: 11.0}), [], 5.0, tail.Cursor(8, {7: 11.0}), set()),
        (tail.Cursor(8, {7: 11.0}), [], 11.5, tail.Cursor(8), set()),
    ],
)
def test_advance(
    cursor: tail.Cursor, seqs: list[int], now: float, after: tail.Cursor, shown: set[int]
) -> None:
    """New seqs are shown once; a gap is looked for again until its hold runs out."""
    assert tail.advance(cursor, seqs, now, HOLD) == (after, frozenset(shown))


def _event(event_type: str, workspace: str = "default") -> Event:
    return Event(
        "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
        event_type,
        workspace,
        "job-1",
        dt.datetime(2026, 11, 27, 10, 42, 7, 118000, tzinfo=dt.UTC),
        {},
    )


@pytest.mark.parametrize(
    ("glob", "workspace", "event", "expected"),
    [
        (None, None, _event("batch_job.created"), True),
        ("batch_job.*", None, _event("batch_job.failed"), True),
        ("batch_job.*", None, _event("batchXjob.failed"), False),
        ("*.deleted", None, _event("file.deleted"), True),
        ("file.deleted", None, _event("file.deleted.x"), False),
        (None, "prod", _event("file.deleted", "default"), False),
        ("file.*", "prod", _event("file.deleted", "prod"), True),
    ],
)
def test_matcher(glob: str | None, workspace: str | None, event: Event, expected: bool) -> None:
    """--type is a glob where only * is special; --workspace is exact."""
    assert tail.matcher(glob, workspace)(event) is expected
