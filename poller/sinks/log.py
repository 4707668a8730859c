"""The ``log`` sink: one line per event on standard output, apart from poller's own logs.

A JSON object per line (the envelope, beside ``"event": "poller_event"`` and the sink's
name) for whatever reads standard output; on a terminal, unless ``format: json``, a short
line a person reads instead: time, workspace, type, resource id, event id, in colour unless
``NO_COLOR`` is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TextIO

from poller import logs, render
from poller.model import Event, Outcome
from poller.sinks.base import dumps


class LogSink:
    """Writes each event as one line to ``stream`` (stdout, looked up at each event)."""

    def __init__(
        self,
        name: str,
        stream: TextIO | None = None,
        *,
        format: str = "auto",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = name
        self.stream = stream
        self.format = format
        self.environ = os.environ if environ is None else environ

    def line(self, event: Event, stream: TextIO) -> str:
        """How ``event`` is written to ``stream``, without its newline."""
        tty = hasattr(stream, "isatty") and stream.isatty()
        if self.format == "console" or (self.format == "auto" and tty):
            return render.event_line(event, colour=logs.colour(stream, self.environ))
        return dumps({"event": "poller_event", "sink": self.name, **event.envelope()}).decode()

    async def deliver(self, event: Event) -> Outcome:
        stream = self.stream or sys.stdout
        try:
            stream.write(self.line(event, stream) + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            return Outcome(ok=False, error=f"cannot write: {exc}")
        return Outcome(ok=True)

    async def aclose(self) -> None:
        return None
