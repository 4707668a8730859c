"""The Makefile's entry points: what `make demo` and `make test` would install."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def planned(target: str, venv: pathlib.Path) -> list[str]:
    """The commands ``make TARGET`` would run on a machine without the venv (``make -n``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    return result.stdout.splitlines()


def test_demo_installs_the_package_alone(tmp_path: pathlib.Path) -> None:
    """`make demo` installs poller without the development tools before running the demo."""
    commands = planned("demo", tmp_path / "venv")
    installs = [c for c in commands if " pip install " in c and "--upgrade pip" not in c]
    assert installs and all(c.endswith(" -e .") for c in installs)
    assert commands[-1].endswith("poller demo")


def test_test_installs_the_development_tools(tmp_path: pathlib.Path) -> None:
    """`make test` installs the dev extra (pytest, ruff, mypy…) before running pytest."""
    commands = planned("test", tmp_path / "venv")
    assert any(c.endswith("-e '.[dev]'") for c in commands)
    assert commands[-1].endswith("-m pytest")


def test_bench_runs_every_benchmark(tmp_path: pathlib.Path) -> None:
    """`make bench` runs every benchmark script under bench/ (the receiver is their helper)."""
    commands = planned("bench", tmp_path / "venv")
    run = {c.split(" -m bench.")[1] for c in commands if " -m bench." in c}
    scripts = {
        p.stem
        for p in (ROOT / "bench").glob("*.py")
        if "__main__" in p.read_text() and p.stem != "receiver"
    }
    assert scripts and run == scripts
