"""Acceptance fixtures: the `poller` command itself, in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("POLLER_")}
    base["PYTHONPATH"] = str(ROOT) + os.pathsep + base.get("PYTHONPATH", "")
    base.update(extra)
    return base


def wait_until(predicate: Callable[[], bool], limit: float = 20.0) -> None:
    """Block until ``predicate()`` holds; ``TimeoutError`` after ``limit`` seconds."""
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


def poller(
    *args: str, timeout: float = 60, environ: Mapping[str, str] | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """Run ``poller ARGS`` to completion, ``environ`` and ``extra`` added to its environment."""
    return subprocess.run(
        [sys.executable, "-m", "poller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env(**{**(environ or {}), **extra}),
        cwd=ROOT,
    )


def spawn(args: Sequence[str], log: pathlib.Path, **extra: str) -> subprocess.Popen[bytes]:
    """Start ``poller ARGS`` in the background, stdout and stderr into ``log``."""
    with log.open("ab") as handle:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "poller", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env(**extra),
            cwd=ROOT,
        )


@pytest.fixture
def write(tmp_path: pathlib.Path):  # type: ignore[no-untyped-def]
    def write(text: str, name: str = "poller.yaml") -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
