"""The ``http`` sink: POSTs each event, signed the Standard Webhooks way.

``format: standard`` sends poller's envelope; ``format: cloudevents`` sends a CloudEvents
1.0 structured-mode document. Both are signed. The URL may carry ``{resource}`` and
``{action}``, so one sink can reproduce the seed's per-event webhook paths.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import httpx

from poller import __version__, utils
from poller.delivery import retry, signing
from poller.model import Event, Outcome
from poller.sinks import base
from poller.sinks.lanes import Lanes

USER_AGENT = f"poller-webhooks/{__version__}"


def client(
    concurrency: int,
    *,
    timeout: float | httpx.Timeout = 10.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The HTTP client of one sink: a connection of its own for each delivery in flight
    (``Lanes``), unless a ``transport`` is given."""
    return httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, transport=transport or Lanes(concurrency)
    )


class HttpSink:
    """Delivers events to one HTTP endpoint."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        client: httpx.AsyncClient,
        secrets: Sequence[str] = (),
        format: str = "standard",
        headers: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.url = url
        self.client = client
        self.secrets = tuple(secrets)
        self.format = format
        self.headers = dict(headers or {})
        self.clock = clock

    def target(self, event: Event) -> str:
        return self.url.replace("{resource}", event.resource).replace("{action}", event.action)

    def render(self, event: Event) -> tuple[bytes, str]:
        """The body and its content type."""
        return base.render(event, self.format)

    def request_headers(self, event: Event, body: bytes, content_type: str) -> dict[str, str]:
        headers = {**self.headers, "content-type": content_type, "user-agent": USER_AGENT}
        headers.update(signing.headers(self.secrets, event.id, int(self.clock()), body))
        return headers

    async def deliver(self, event: Event) -> Outcome:
        body, content_type = self.render(event)
        headers = self.request_headers(event, body, content_type)
        started = time.perf_counter()
        try:
            response = await self.client.post(self.target(event), content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(ok=False, error="timed out", duration_ms=base.elapsed_ms(started))
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"[:300]
            return Outcome(ok=False, error=error, duration_ms=base.elapsed_ms(started))
        duration = base.elapsed_ms(started)
        code = response.status_code
        kind = retry.classify(code)
        if kind == "delivered":
            return Outcome(
                ok=True, status_code=code, duration_ms=duration, detail=response.text[:200] or None
            )
        retry_after = None
        if code in (429, 503):
            retry_after = utils.parse_retry_after(response.headers.get("retry-after"))
        return Outcome(
            ok=False,
            status_code=code,
            error=f"HTTP {code}" + (f": {response.text[:200]}" if response.text else ""),
            duration_ms=duration,
            retry_after=retry_after,
            gone=kind == "gone",
            rejected=kind == "rejected",
        )

    async def aclose(self) -> None:
        return None
