"""Helpers for tests — poller's own and its users': a real webhook receiver on 127.0.0.1.

``WebhookReceiver`` is a real HTTP server in a background thread. It records every
request and answers what it is told to (a status per call, a delay, a failure window),
so tests exercise delivery over real sockets rather than a mocked client. It also checks
each event it receives against poller's published AsyncAPI document and event schemas
(``event_problems``, with ``jsonschema`` installed), and fails its ``with`` block when one
does not match.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from poller import asyncapi, eventschema


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[["Received"], "int | tuple[int, dict[str, str]]"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port free a moment ago, for a subprocess that must be told its port up front.

    Another process may take it in between; where the code binds for itself, bind port 0.
    """
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, limit: float = 15.0) -> None:
    """Block until something accepts connections on 127.0.0.1:``port``."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


ASYNCAPI_URI = "urn:poller:asyncapi"


@functools.cache
def _validator(pointer: str) -> Any:
    """A validator of the schema at ``pointer`` in poller's AsyncAPI document."""
    import jsonschema
    import referencing
    import referencing.jsonschema

    resource = referencing.Resource.from_contents(
        asyncapi.document(), default_specification=referencing.jsonschema.DRAFT202012
    )
    registry: Any = referencing.Registry().with_resource(ASYNCAPI_URI, resource)
    return jsonschema.Draft202012Validator(
        {"$ref": f"{ASYNCAPI_URI}#{pointer}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


@functools.cache
def _standalone(name: str, form: str) -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(
        eventschema.schema(name, form),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def event_problems(headers: dict[str, str], body: bytes, channel: str = "webhook") -> list[str]:
    """What does not match poller's documents in one message (``[]`` when it all does).

    The body is checked against the payload of its type's message on ``channel`` in the
    AsyncAPI document and, where that payload is the event itself, against the type's
    standalone JSON Schema (``docs/events/types``); the headers (as the transport names
    them; lower-cased for HTTP) against the message's headers. Needs ``jsonschema``.
    """
    content_type = headers.get("content-type", headers.get("Content-Type", ""))
    form = eventschema.CLOUDEVENTS if "cloudevents" in content_type else eventschema.ENVELOPE
    try:
        document = json.loads(body)
    except ValueError:
        return ["the body is not JSON"]
    name = str(document.get("type")) if isinstance(document, dict) else None
    key = asyncapi.message_key(str(name), form)
    message = asyncapi.document()["channels"][channel]["messages"].get(key)
    if message is None:
        return [f"no {form} message for type {name!r} on channel {channel}"]
    base = f"/channels/{channel}/messages/{key}"
    checks = [("payload", _validator(f"{base}/payload"), document)]
    if message["payload"]["$ref"].endswith("/" + asyncapi.schema_key(str(name), form)):
        checks.append(("schema", _standalone(str(name), form), document))
    if "headers" in message:
        checks.append(("headers", _validator(f"{base}/headers"), headers))
    return [
        f"{name} {what}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for what, validator, instance in checks
        for e in validator.iter_errors(instance)
    ]


def document_problems(document: Any, form: str = eventschema.ENVELOPE) -> list[str]:
    """What in one event document (an envelope, or a CloudEvents one) breaks its schema."""
    name = document.get("type") if isinstance(document, dict) else None
    if name not in {t.name for t in eventschema.event_types()}:
        return [f"unknown event type {name!r}"]
    return [
        f"{name} {document.get('id')}: {'/'.join(map(str, e.absolute_path)) or '(root)'}: "
        f"{e.message}"
        for e in _standalone(name, form).iter_errors(document)
    ]


def recorded_problems(engine: Any) -> list[str]:
    """What in the events a store recorded breaks their schemas, as sinks would send them."""
    import sqlalchemy as sa

    from poller.sinks.base import dumps
    from poller.store.feed import Feed

    if "events" not in sa.inspect(engine).get_table_names():
        return []
    feed, seq, problems = Feed(engine), 0, []
    while rows := feed.after(seq, limit=1000):
        for _seq, event in rows:
            problems.extend(document_problems(json.loads(dumps(event.envelope()))))
        seq = rows[-1][0]
    return problems


def _jsonschema_installed() -> bool:
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        return False
    return True


class WebhookReceiver:
    """A local HTTP endpoint that records deliveries; use as a context manager.

    ``respond`` decides each answer from the request (default 200); ``delay`` slows every
    answer. Requests are recorded whatever the answer, with the status given. Every
    request carrying a ``webhook-id`` is checked with ``event_problems`` (when ``validate``
    is on, the default wherever ``jsonschema`` is installed); leaving the ``with`` block
    raises ``AssertionError`` naming what did not match.
    """

    def __init__(
        self,
        respond: Responder | None = None,
        *,
        delay: float = 0.0,
        validate: bool | None = None,
    ) -> None:
        self.respond: Responder = respond or (lambda _r: 200)
        self.delay = delay
        self.validate = _jsonschema_installed() if validate is None else validate
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if len(body) < length:  # the sender went away mid-request: nothing arrived
                    self.close_connection = True
                    return
                if receiver.delay:
                    time.sleep(receiver.delay)
                draft = Received(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    0,
                    time.time(),
                )
                if receiver.validate and "webhook-id" in draft.headers:
                    found = event_problems(draft.headers, body)
                    with receiver._lock:
                        receiver.problems.extend(found)
                answer = receiver.respond(draft)
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                record = dataclasses.replace(draft, status=status)
                with receiver._lock:
                    receiver.requests.append(record)
                    receiver._lock.notify_all()
                payload = b'{"ok":true}' if 200 <= status < 300 else b'{"error":"refused"}'
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc_type is None and self.problems:
            shown = "; ".join(self.problems[:5])
            raise AssertionError(
                f"{len(self.problems)} received event(s) do not match poller's schemas: {shown}"
            )

    def close(self) -> None:
        if self._thread.is_alive():  # shutdown() waits forever for a loop that never ran
            self._server.shutdown()
        self._server.server_close()

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0
    ) -> list[Received]:
        """Block until ``predicate(all requests)`` holds; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(list(self.requests)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"receiver: condition not met, {len(self.requests)} requests"
                    )
                self._lock.wait(left)
            return list(self.requests)

    def wait_delivered(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Block until ``count`` requests were answered 2xx."""
        self.wait_for(lambda rs: sum(200 <= r.status < 300 for r in rs) >= count, timeout)
        return self.delivered()


def failing_for(calls: int, status: int = 503) -> Responder:
    """A responder that answers ``status`` to the first ``calls`` requests, then 200."""
    count = iter(range(1 << 30))

    def respond(_r: Received) -> int:
        return status if next(count) < calls else 200

    return respond


def events_by_type(requests: list[Received]) -> Iterator[tuple[str, str]]:
    """(type, resource id) of each received envelope."""
    for r in requests:
        doc = r.json()
        data = doc.get("data", {})
        yield doc.get("type"), data.get("id")


def leader_pid(engine: Any, workspace: str = "default") -> int | None:
    """The pid of the replica (id ``HOST:PID``) holding ``workspace``'s lease, if one does.

    For tests and benchmarks of replicas on a PostgreSQL store; ``None`` before the first
    replica made the schema.
    """
    import sqlalchemy as sa

    from poller.store import all_leases

    try:
        leases = {lease.workspace: lease for lease in all_leases(engine)}
    except sa.exc.ProgrammingError:
        return None
    lease = leases.get(workspace)
    if lease is None or lease.holder is None:
        return None
    return int(lease.holder.rsplit(":", 1)[1])


def baselined_sources(engine: Any) -> int:
    """How many sources of a store took their baseline (0 before the schema exists)."""
    import sqlalchemy as sa

    with engine.connect() as conn:
        try:
            done = conn.scalar(sa.text("select count(*) from source_state where baselined"))
        except sa.exc.ProgrammingError:
            return 0
    return int(done or 0)
