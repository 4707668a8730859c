"""Pure helpers of the polling layer."""

from __future__ import annotations

import pytest

from poller.model import Resource
from poller.polling import newest


@pytest.mark.parametrize(
    ("cursor", "created", "expected"),
    [(None, [], None), (None, [5, 9, None], 9), (12, [5, 9], 12), (3, [5, None], 5)],
)
def test_cursor_moves_to_the_newest(
    cursor: int | None, created: list[int | None], expected: int | None
) -> None:
    """The incremental cursor is the newest creation time seen, never moving back."""
    resources = [
        Resource(id=str(n), status=None, created=c, data={}) for n, c in enumerate(created)
    ]
    assert newest(cursor, resources) == expected


async def test_settled_waits_for_its_thread_when_cancelled() -> None:
    """A cancelled poll gets its CancelledError only once the thread's write has finished."""
    import asyncio
    import time

    from poller.polling import settled

    finished: list[bool] = []

    def slow_write() -> None:
        time.sleep(0.2)
        finished.append(True)

    task = asyncio.create_task(settled(slow_write))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == [True]
