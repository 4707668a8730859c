"""A sink whose failure messages are scrubbed of secrets before anyone records them.

A receiver may echo what it was sent — a static ``Authorization`` header, a token in the
URL — in the error body that becomes a delivery's ``last_error``, its attempt log and a log
line. The composition root wraps every sink in ``redacted`` so none of that reaches the store.
A sink that delivers in batches stays one (``RedactedBatch``), each outcome scrubbed alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from poller.model import Event, Outcome
from poller.sinks.base import BatchSink, Sink, batching


class Redacted:
    """Delegates to ``inner``; an outcome's ``error`` and ``detail`` pass through ``redact``."""

    def __init__(self, inner: Sink, redact: Callable[[str], str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.redact = redact

    async def deliver(self, event: Event) -> Outcome:
        return self._scrubbed(await self.inner.deliver(event))

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _scrubbed(self, outcome: Outcome) -> Outcome:
        if outcome.error or outcome.detail:
            return dataclasses.replace(
                outcome,
                error=self.redact(outcome.error) if outcome.error else outcome.error,
                detail=self.redact(outcome.detail) if outcome.detail else outcome.detail,
            )
        return outcome


class RedactedBatch(Redacted):
    """``Redacted`` around a sink that delivers in batches; ``deliver_many`` passes through."""

    def __init__(self, inner: BatchSink, redact: Callable[[str], str]) -> None:
        super().__init__(inner, redact)
        self.batch = inner

    async def deliver_many(self, events: Sequence[Event]) -> list[Outcome]:
        return [self._scrubbed(o) for o in await self.batch.deliver_many(events)]


def redacted(inner: Sink, redact: Callable[[str], str]) -> Redacted:
    """``inner`` wrapped so its outcomes are scrubbed; a batch sink stays a batch sink."""
    if (batch := batching(inner)) is not None:
        return RedactedBatch(batch, redact)
    return Redacted(inner, redact)
