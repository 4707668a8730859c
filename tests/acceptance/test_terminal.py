"""`poller demo` on a real pseudo-terminal: the log sink writes short readable lines there."""

from __future__ import annotations

import os
import pty
import re
import select
import sys
import time

import pytest

from .conftest import ROOT, env

ANSI = re.compile(r"\x1b\[[0-9;]*m")
EVENT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT[\d:.]+Z  default  "
    r"(batch_job|fine_tuning_job|file|model)\.[a-z_]+  \S+  evt_[a-z0-9]{26}$"
)


def on_a_terminal(*args: str, **extra: str) -> str:
    """What ``poller ARGS`` writes on a pseudo-terminal (stdout and stderr), until it exits."""
    child_env = env(**extra)
    pid, fd = pty.fork()
    if pid == 0:  # the child: its standard streams are the terminal
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "poller", *args], child_env)
    output = b""
    deadline = time.monotonic() + 90  # a safety net only: the command stops by itself
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, output.decode(errors="replace")
    return output.decode().replace("\r\n", "\n")


@pytest.mark.parametrize("no_color", [False, True], ids=["colour", "NO_COLOR"])
def test_demo_on_a_terminal_prints_one_short_line_per_event(no_color: bool) -> None:
    """On a terminal, each event is one line (time, workspace, type, resource, event id),
    coloured unless NO_COLOR is set, and no event is printed as JSON."""
    extra = {"NO_COLOR": "1"} if no_color else {}
    output = on_a_terminal("demo", "--duration", "8", **extra)
    lines = output.splitlines()
    events = [line for line in lines if EVENT_LINE.match(ANSI.sub("", line))]
    assert any("batch_job.created" in line for line in events), output
    assert not any('"poller_event"' in line for line in lines)
    coloured = [line for line in events if ANSI.search(line)]
    assert coloured == ([] if no_color else events)
