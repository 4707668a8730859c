"""systemd notifications over a real AF_UNIX datagram socket bound by the test."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import pathlib
import socket
import uuid
from collections.abc import Iterator

import pytest
import structlog

from poller.health import Board
from poller.sdnotify import Notifier, Watchdog, watchdog_interval


@pytest.fixture
def listener(tmp_path: pathlib.Path) -> Iterator[tuple[str, socket.socket]]:
    """A datagram socket standing in for systemd; yields (NOTIFY_SOCKET value, socket)."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield str(path), sock


def received(sock: socket.socket) -> list[str]:
    sock.setblocking(False)
    messages = []
    while True:
        try:
            messages.append(sock.recv(4096).decode())
        except BlockingIOError:
            return messages


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"NOTIFY_SOCKET": ""}, False),
        ({"NOTIFY_SOCKET": "relative/path"}, False),
        ({"NOTIFY_SOCKET": "/run/systemd/notify"}, True),
        ({"NOTIFY_SOCKET": "@abstract"}, True),
    ],
)
def test_from_environ(environ: dict[str, str], expected: bool) -> None:
    """Only an absolute path or an abstract name makes a notifier."""
    assert (Notifier.from_environ(environ) is not None) is expected


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "42"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "43"}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    """Pings go at half of WATCHDOG_USEC, and only when WATCHDOG_PID (if any) is ours."""
    assert watchdog_interval(environ, pid=42) == expected


def test_send_to_a_path(listener: tuple[str, socket.socket]) -> None:
    """One datagram of newline-separated assignments reaches the socket."""
    address, sock = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier is not None and notifier.send("READY=1", "STATUS=hello")
    assert sock.recv(4096) == b"READY=1\nSTATUS=hello"


def test_send_to_an_abstract_name() -> None:
    """A leading @ names a socket in the abstract namespace."""
    name = f"poller-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None and notifier.send("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_a_missing_socket_is_reported_not_raised(tmp_path: pathlib.Path) -> None:
    """When the socket is gone, send() says False instead of raising."""
    assert Notifier(str(tmp_path / "gone")).send("READY=1") is False


def test_reloading_carries_the_monotonic_time(listener: tuple[str, socket.socket]) -> None:
    """RELOADING=1 goes with MONOTONIC_USEC, as systemd asks."""
    address, sock = listener
    Notifier(address).reloading()
    lines = sock.recv(4096).decode().splitlines()
    assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
    assert int(lines[1].split("=")[1]) > 0


@dataclasses.dataclass
class Result:
    last_success_at: dt.datetime | None = None
    error_streak: int = 0
    disabled: str | None = None
    next_delay: float = 0.05


class Beat:
    def __init__(self, alive_at: float) -> None:
        self.alive_at = alive_at


async def test_ready_then_pings_then_stopping(listener: tuple[str, socket.socket]) -> None:
    """READY after the first poll of every source, WATCHDOG pings, STOPPING at the end."""
    address, sock = listener
    board = Board()
    board.track("prod", "files", interval=1, timeout=1)
    stop = asyncio.Event()
    watchdog = Watchdog(Notifier(address), board, interval=0.05, status=lambda: "fine")
    task = asyncio.create_task(watchdog.run(stop))
    await asyncio.sleep(0.1)
    assert received(sock) == []  # not ready before the first poll
    board.polled("prod", "files", Result(last_success_at=dt.datetime.now(dt.UTC)))
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 2)
    messages = received(sock)
    assert messages[0] == "READY=1\nSTATUS=fine"
    assert messages.count("WATCHDOG=1\nSTATUS=fine") >= 2
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


async def test_a_stalled_loop_withholds_the_pings(listener: tuple[str, socket.socket]) -> None:
    """While a sink worker's loop stands still, no WATCHDOG=1 goes out; STATUS says why."""
    address, sock = listener
    board = Board()
    stuck = Beat(0.0)
    board.watch_worker("hook", stuck)
    stuck.alive_at = board.monotonic()
    watchdog = Watchdog(Notifier(address), board, interval=0.05, status=lambda: "fine")
    watchdog.tick()
    assert received(sock) == ["WATCHDOG=1\nSTATUS=fine"]
    stuck.alive_at = board.monotonic() - 3600
    watchdog.tick()
    (message,) = received(sock)
    assert "WATCHDOG=1" not in message
    assert message.startswith("STATUS=stalled: sink hook: its worker loop has not turned")
    stuck.alive_at = board.monotonic()
    watchdog.tick()
    assert received(sock) == ["WATCHDOG=1\nSTATUS=fine"]


async def test_stop_before_ready_still_says_stopping(listener: tuple[str, socket.socket]) -> None:
    """Stopped before the first cycle ends: no READY, but STOPPING."""
    address, sock = listener
    board = Board()
    board.track("prod", "files", interval=1, timeout=1)
    stop = asyncio.Event()
    task = asyncio.create_task(
        Watchdog(Notifier(address), board, interval=None, status=str).run(stop)
    )
    await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 2)
    assert received(sock) == ["STOPPING=1\nSTATUS=stopping"]


def test_a_stall_is_logged_once_while_it_lasts(listener: tuple[str, socket.socket]) -> None:
    """A loop that stays stalled is one watchdog_withheld line, however long it lasts."""
    address, _sock = listener
    board = Board()
    stuck = Beat(board.monotonic() - 3600)
    board.watch_worker("hook", stuck)
    watchdog = Watchdog(Notifier(address), board, interval=0.05, status=lambda: "fine")
    with structlog.testing.capture_logs() as logs:
        watchdog.tick()
        stuck.alive_at -= 60  # a minute later, it still has not turned
        watchdog.tick()
        stuck.alive_at = board.monotonic()
        watchdog.tick()
    assert [e["event"] for e in logs] == ["watchdog_withheld", "watchdog_resumed"]
