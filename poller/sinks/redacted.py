"""A sink whose failure messages are scrubbed of secrets before anyone records them.

A receiver may echo what it was sent — a static ``Authorization`` header, a token in the
URL — in the error body that becomes a delivery's ``last_error``, its attempt log and a log
line. The composition root wraps every sink in ``Redacted`` so none of that reaches the store.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from poller.model import Event, Outcome
from poller.sinks.base import Sink


class Redacted:
    """Delegates to ``inner``; an outcome's ``error`` and ``detail`` pass through ``redact``."""

    def __init__(self, inner: Sink, redact: Callable[[str], str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.redact = redact

    async def deliver(self, event: Event) -> Outcome:
        outcome = await self.inner.deliver(event)
        if outcome.error or outcome.detail:
            return dataclasses.replace(
                outcome,
                error=self.redact(outcome.error) if outcome.error else outcome.error,
                detail=self.redact(outcome.detail) if outcome.detail else outcome.detail,
            )
        return outcome

    async def aclose(self) -> None:
        await self.inner.aclose()
