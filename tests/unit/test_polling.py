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
