"""How poller prints for people: table moments in UTC with their zone, event lines."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from poller import render
from poller.model import Event

PARIS = dt.timezone(dt.timedelta(hours=1))


@pytest.mark.parametrize(
    ("moment", "shown"),
    [
        (dt.datetime(2026, 11, 28, 10, 42, 7, 123456, tzinfo=dt.UTC), "2026-11-28 10:42:07Z"),
        (dt.datetime(2026, 11, 28, 11, 42, 7, tzinfo=PARIS), "2026-11-28 10:42:07Z"),
        (dt.datetime(2026, 11, 28, 10, 42, 7), "2026-11-28 10:42:07Z"),
    ],
    ids=["utc", "other zone", "no zone"],
)
def test_table_moments_carry_their_zone(moment: dt.datetime, shown: str) -> None:
    """A moment in a table is written in UTC to the second, followed by Z."""
    text = render.table([{"id": "evt_1", "timestamp": moment}], ["id", "timestamp"])
    assert text.splitlines() == ["ID     TIMESTAMP", f"evt_1  {shown}"]


EVENT = Event(
    "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
    "batch_job.succeeded",
    "default",
    "job-1",
    dt.datetime(2026, 11, 27, 10, 42, 7, 118000, tzinfo=dt.UTC),
    {},
)


def test_event_line() -> None:
    """A terminal line: time, workspace, type, resource id, event id."""
    assert render.event_line(EVENT) == (
        "2026-11-27T10:42:07.118000Z  default  batch_job.succeeded  job-1  "
        "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e"
    )


@pytest.mark.parametrize(
    ("event_type", "tint"),
    [
        ("batch_job.succeeded", "32"),
        ("fine_tuning_job.failed", "31"),
        ("file.deleted", "33"),
        ("file.uploaded", "36"),
    ],
)
def test_event_line_in_colour(event_type: str, tint: str) -> None:
    """In colour, the type takes its action's colour; time and event id are dimmed."""
    line = render.event_line(dataclasses.replace(EVENT, type=event_type), colour=True)
    assert line == (
        "\x1b[2m2026-11-27T10:42:07.118000Z\x1b[0m  default  "
        f"\x1b[{tint}m{event_type}\x1b[0m  job-1  \x1b[2mevt_3k2qbn5pdmc4w6xsl7ayvjrt2e\x1b[0m"
    )
