"""The log sink: JSON lines for programs, a short readable line on a terminal."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest

from poller.sinks.log import LogSink

from . import test_render

EVENT = dataclasses.replace(
    test_render.EVENT,
    type="file.uploaded",
    resource_id="file-1",
    data={"id": "file-1", "filename": "in.jsonl", "purpose": "batch", "size": 12},
)
PLAIN = (
    "2026-11-27T10:42:07.118000Z  default  file.uploaded  file-1  evt_3k2qbn5pdmc4w6xsl7ayvjrt2e"
)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as standard output on a TTY does."""

    def isatty(self) -> bool:
        return True


async def written(sink: LogSink) -> str:
    outcome = await sink.deliver(EVENT)
    assert outcome.ok
    assert sink.stream is not None
    return sink.stream.getvalue()  # type: ignore[attr-defined, no-any-return]


async def test_json_line_when_not_a_terminal() -> None:
    """Piped or redirected, `auto` writes the envelope as one JSON object per line."""
    text = await written(LogSink("console", io.StringIO(), environ={}))
    assert text.endswith("\n") and text.count("\n") == 1
    assert json.loads(text) == {
        "event": "poller_event",
        "sink": "console",
        "id": "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
        "type": "file.uploaded",
        "timestamp": "2026-11-27T10:42:07.118000Z",
        "workspace": "default",
        "data": {"id": "file-1", "filename": "in.jsonl", "purpose": "batch", "size": 12},
    }


@pytest.mark.parametrize(
    ("fmt", "stream", "environ", "line"),
    [
        (
            "auto",
            Terminal,
            {},
            "\x1b[2m2026-11-27T10:42:07.118000Z\x1b[0m  default  \x1b[36mfile.uploaded\x1b[0m  "
            "file-1  \x1b[2mevt_3k2qbn5pdmc4w6xsl7ayvjrt2e\x1b[0m",
        ),
        ("auto", Terminal, {"NO_COLOR": "1"}, PLAIN),
        ("console", io.StringIO, {}, PLAIN),
    ],
    ids=["terminal", "terminal NO_COLOR", "console piped"],
)
async def test_readable_line(
    fmt: str, stream: type[io.StringIO], environ: dict[str, str], line: str
) -> None:
    """On a terminal (or with format: console), one short line: time, workspace, type,
    resource, event id; coloured only on a terminal without NO_COLOR."""
    assert await written(LogSink("console", stream(), format=fmt, environ=environ)) == line + "\n"


async def test_json_format_stays_json_on_a_terminal() -> None:
    """`format: json` writes JSON lines on a terminal too."""
    text = await written(LogSink("console", Terminal(), format="json", environ={}))
    assert json.loads(text)["id"] == EVENT.id
