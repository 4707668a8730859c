"""How the CLI prints tables: moments in UTC with their zone written."""

from __future__ import annotations

import datetime as dt

import pytest

from poller import render

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
