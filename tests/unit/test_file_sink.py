"""The file sink: JSON lines on disk before done, one fsync shared by concurrent deliveries."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import pathlib

import pytest

from poller.model import Event
from poller.sinks.file import FileSink

NOW = dt.datetime(2026, 11, 27, tzinfo=dt.UTC)


def event(n: int) -> Event:
    return Event(f"evt_{n}", "file.uploaded", "w", f"f{n}", NOW, {"id": f"f{n}"})


async def test_concurrent_deliveries_share_fsyncs(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty deliveries at once are all on disk, in order, with fewer fsyncs than lines."""
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    sink = FileSink("file", tmp_path / "events.jsonl")
    outcomes = await asyncio.gather(*(sink.deliver(event(n)) for n in range(20)))
    await sink.aclose()
    assert all(o.ok for o in outcomes)
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == [f"evt_{n}" for n in range(20)]
    assert 1 <= len(calls) < 20


async def test_unwritable_path_fails_every_delivery(tmp_path: pathlib.Path) -> None:
    """When the file cannot be written, each delivery fails with the reason (and is retried)."""
    (tmp_path / "events.jsonl").mkdir()
    sink = FileSink("file", tmp_path / "events.jsonl")
    outcomes = await asyncio.gather(*(sink.deliver(event(n)) for n in range(3)))
    assert [o.ok for o in outcomes] == [False] * 3
    assert "cannot append" in (outcomes[0].error or "")


async def test_rotation_reopens_the_file(tmp_path: pathlib.Path) -> None:
    """A file moved away (log rotation) is recreated at the configured path."""
    path = tmp_path / "events.jsonl"
    sink = FileSink("file", path)
    await sink.deliver(event(1))
    path.rename(tmp_path / "events.jsonl.1")
    await sink.deliver(event(2))
    await sink.aclose()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["evt_2"]


async def test_a_created_file_is_durable_in_its_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file the sink creates is fsync'ed in its directory too, so a crash cannot unlink it."""
    synced: list[tuple[int, int]] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((st.st_dev, st.st_ino))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    sink = FileSink("file", tmp_path / "logs" / "events.jsonl")
    assert (await sink.deliver(event(1))).ok
    await sink.aclose()
    directory = os.stat(tmp_path / "logs")
    assert (directory.st_dev, directory.st_ino) in synced
