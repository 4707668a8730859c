"""The ``log`` sink: one JSON line per event on standard output."""

from __future__ import annotations

import sys
from typing import TextIO

from poller.model import Event, Outcome
from poller.sinks.base import dumps


class LogSink:
    """Writes each event as one JSON line to ``stream`` (stdout), apart from poller's own logs."""

    def __init__(self, name: str, stream: TextIO | None = None) -> None:
        self.name = name
        self.stream = stream

    async def deliver(self, event: Event) -> Outcome:
        stream = self.stream or sys.stdout
        line = {"event": "poller_event", "sink": self.name, **event.envelope()}
        try:
            stream.write(dumps(line).decode() + "\n")
            stream.flush()
        except (OSError, ValueError) as exc:
            return Outcome(ok=False, error=f"cannot write: {exc}")
        return Outcome(ok=True)

    async def aclose(self) -> None:
        return None
