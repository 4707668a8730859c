"""poller's log configuration: colour on a terminal only, and never under NO_COLOR."""

from __future__ import annotations

import logging
import os
import pty
from collections.abc import Iterator

import pytest
import structlog

from poller import logs


@pytest.fixture
def terminal() -> Iterator[tuple[int, int]]:
    """A real pseudo-terminal: (the side poller writes to, the side that reads it)."""
    controller, child = pty.openpty()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield child, controller
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level
    os.close(child)
    os.close(controller)


def _one_line(terminal: tuple[int, int]) -> str:
    child, controller = terminal
    with os.fdopen(os.dup(child), "w") as stream:
        logs.configure(level="info", stream=stream)
        structlog.get_logger("poller.test").warning("disk_low", free="1%")
        stream.flush()
    return os.read(controller, 65536).decode()


@pytest.mark.parametrize(("value", "coloured"), [(None, True), ("", True), ("1", False)])
def test_terminal_colour_follows_no_color(
    terminal: tuple[int, int], monkeypatch: pytest.MonkeyPatch, value: str | None, coloured: bool
) -> None:
    """On a terminal lines are coloured unless NO_COLOR is set and not empty."""
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    if value is None:
        monkeypatch.delenv("NO_COLOR", raising=False)
    else:
        monkeypatch.setenv("NO_COLOR", value)
    line = _one_line(terminal)
    assert "disk_low" in line and "free" in line
    assert ("\x1b[" in line) is coloured


@pytest.mark.parametrize(
    ("name", "level", "passes", "shown_as"),
    [("aiormq.connection", logging.INFO, False, "DEBUG"),
     ("aiormq.connection", logging.DEBUG, True, "DEBUG"),
     ("aio_pika", logging.DEBUG, True, "DEBUG"),
     ("aio_pikachu", logging.INFO, True, "ERROR"),
     ("uvicorn.error", logging.INFO, True, "ERROR")],
)  # fmt: skip
def test_broker_client_records_are_kept_at_debug(
    name: str, level: int, passes: bool, shown_as: str
) -> None:
    """aio-pika's and aiormq's errors become debug lines (none unless debug); others stay."""
    record = logging.LogRecord(name, logging.ERROR, __file__, 1, "connection lost", None, None)
    assert logs.Quieted(level).filter(record) is passes
    assert record.levelname == shown_as
