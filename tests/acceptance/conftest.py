"""Acceptance fixtures: the `poller` command itself, in a subprocess."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .replicas import Replicas

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


@pytest.fixture
def replicas(
    sim: tuple[Any, Any],
    postgres_url: str,
    write: Callable[[str], pathlib.Path],
    tmp_path: pathlib.Path,
) -> Iterator[Callable[..., Replicas]]:
    """Makes groups of replicas on the module's simulator (``sim``) and one PostgreSQL
    schema: ``make(hook, level, **options)``, options as ``replicas.config_text`` takes
    them, and ``store`` for the store URL the config names (``${VAR}`` allowed); every
    process is stopped afterwards."""
    from .replicas import Replicas, config_text

    made: list[Replicas] = []

    def make(
        hook: str | None, level: str = "info", store: str | None = None, **options: Any
    ) -> Replicas:
        text = config_text(sim[1].url, store or postgres_url, hook, level=level, **options)
        path = write(text)
        logs = tmp_path / f"group-{len(made)}"
        logs.mkdir()
        group = Replicas(path, logs, postgres_url)
        made.append(group)
        return group

    yield make
    for group in made:
        group.stop()
