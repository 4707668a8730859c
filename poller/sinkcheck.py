"""``poller sinks test NAME``: one signed ``poller.test`` event through one sink, end to end.

The sink is built by the composition root exactly as the daemon builds it (same code
path, same signing, same redaction), so what the receiver or broker answers is what a
real event would get. The test event never enters the store: it has no delivery row, no
retry and no attempt log, so the outbox's real deliveries, the sink's circuit and its
metrics stay as they were. Its id is new on every run, so a receiver that deduplicates
takes it each time.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import TextIO

import httpx

from poller import catalog
from poller import config as config_mod
from poller.app import App
from poller.model import Event, Outcome

MESSAGE = "A test event from `poller sinks test`: the sink works if you can read this."


def probe_event(sink: str, workspace: str, now: dt.datetime, nonce: str) -> Event:
    """The ``poller.test`` event for ``sink``; ``nonce`` makes its id new on every run."""
    return Event(
        id=catalog.event_id(workspace, catalog.TEST.name, sink, nonce),
        type=catalog.TEST.name,
        workspace=workspace,
        resource_id=sink,
        timestamp=now,
        data={"sink": sink, "message": MESSAGE},
    )


def describe(sink: str, event: Event, outcome: Outcome) -> str:
    """One line saying how the test went and what the receiver or broker answered."""
    took = f"{outcome.duration_ms:.0f} ms" if outcome.duration_ms is not None else None
    status = f"HTTP {outcome.status_code}" if outcome.status_code is not None else None
    how = ", ".join(x for x in (status, took) if x)
    if outcome.ok:
        answer = f": {outcome.detail}" if outcome.detail else ""
        return f"sink {sink}: {event.type} {event.id} delivered" + (
            f" ({how}){answer}" if how else answer
        )
    if outcome.gone:
        verdict = "gone (the receiver asks poller to stop sending)"
    elif outcome.rejected:
        verdict = "refused the event"
    else:
        verdict = "failed"
    return f"sink {sink} {verdict}: {outcome.error or how or 'no answer'}"


async def send(
    config: config_mod.Config,
    sink: config_mod.SinkConfig,
    *,
    now: dt.datetime,
    stdout: TextIO | None = None,
    sink_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Event, Outcome]:
    """Deliver one test event through ``sink`` as the daemon would; nothing is recorded."""
    workspace = config.workspaces[0].name if config.workspaces else "default"
    event = probe_event(sink.name, workspace, now, secrets.token_hex(8))
    app = App(config, stdout=stdout, sink_transport=sink_transport)
    built = app.build_sink(sink)
    try:
        outcome = await built.deliver(event)
    finally:
        await built.aclose()
        await app.aclose()
    return event, outcome
