"""A fast webhook receiver in a thread of the test process, recording every request.

``poller.testing.WebhookReceiver`` (``http.server``, one thread per connection) answers a
few hundred requests a second; this one is uvicorn, as the benchmarks' receiver is, so that
a dispatcher runs at its own pace. It answers 200 to every POST, and records the request
before answering: whatever a sender may have seen answered, the recorder has.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from types import TracebackType
from typing import Any

from poller import serving


@dataclasses.dataclass(frozen=True, slots=True)
class Request:
    """One request as it arrived: its headers (names lower-case) and body."""

    headers: dict[str, str]
    body: bytes


class Recorder:
    """uvicorn on 127.0.0.1 (a free port) from a background thread; a context manager."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Condition()
        self._sock = serving.listen_socket(("127.0.0.1", 0), backlog=128)
        self._started = threading.Event()
        self._server = serving.Server(
            serving.config(self._app, interface="asgi3"), on_started=self._started.set
        )
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the sender went away mid-request: nothing arrived
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.requests.append(Request(headers, b"".join(chunks)))
            self._lock.notify_all()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def _run(self) -> None:
        asyncio.run(self._server.serve(sockets=[self._sock]))

    def __enter__(self) -> Recorder:
        self._thread.start()
        if not self._started.wait(15):
            raise RuntimeError("the recorder did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.should_exit = True
        self._thread.join(15)
        self._sock.close()

    def wait_for(self, count: int, timeout: float) -> None:
        """Block until ``count`` requests arrived in all; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"recorder: condition not met, {len(self.requests)} requests"
                    )
                self._lock.wait(left)
