"""Secrets never reach a rendered log line or the store, whatever the API and sinks echo."""

from __future__ import annotations

import base64
import io
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog

from poller import logs, sinkcheck, utils
from poller.app import App, secrets_of
from poller.runner import Runner
from poller.simulator import Simulator, SimulatorServer

from .conftest import make_config

API_KEY = "sk-live-0123456789abcdef"
SINK_SECRET = "whsec_" + base64.b64encode(b"redaction-test-secret-32-bytes!!").decode()
SINK_TOKEN = "receiver-token-9876543210"
SINK_PASSWORD = "receiver-password-1357924680"


class EchoingReceiver:
    """A receiver that answers 500 with its path and every header, as careless servers do."""

    def __init__(self, status: int = 500) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                body = json.dumps({"path": self.path, **self.headers}).encode()
                self.send_response(status)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> EchoingReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def rendered() -> Iterator[io.StringIO]:
    """poller's real log configuration, rendering JSON lines into a buffer; restored after."""
    buffer = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield buffer
    structlog.reset_defaults()
    root.handlers, root.level = handlers, level
    logs.REDACTOR.update(())


async def test_no_secret_in_rendered_logs_or_store(rendered: io.StringIO, store_file: str) -> None:
    """A 401 echoing the key, a sink echoing its credentials, debug logs: no secret leaks."""
    sim = Simulator(api_key=API_KEY)
    sim.add_fault(
        kind="status",
        status=401,
        count=-1,
        match={"path": "/v1/batch"},
        body={"message": f"key {API_KEY} was revoked", "header": f"Bearer {API_KEY}"},
    )
    with SimulatorServer(sim) as server, EchoingReceiver() as receiver:
        hook = {
            "name": "hook",
            "type": "http",
            "url": receiver.url,
            "secret": SINK_SECRET,
            "headers": {"X-Receiver-Token": SINK_TOKEN},
        }
        config = make_config(
            server.url, None, store_file, mistral={"api_key": API_KEY}, sinks=[hook]
        )
        logs.configure(level="debug", fmt="json", stream=rendered, secrets=secrets_of(config))
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            sim.create_file(filename="news.jsonl")
            await runner.once()
    lines = [json.loads(line) for line in rendered.getvalue().splitlines()]
    names = {line["event"] for line in lines}
    assert {"poll_failed", "delivery_failed", "poll_done"} <= names  # all three happened
    dump = "\n".join(sqlite3.connect(store_file.removeprefix("sqlite:///")).iterdump())
    assert "was revoked" in rendered.getvalue() and "was revoked" in dump
    for secret in (API_KEY, SINK_SECRET, SINK_TOKEN):
        assert secret not in rendered.getvalue()
        assert secret not in dump


async def test_no_url_credential_in_rendered_logs_or_store(
    rendered: io.StringIO, store_file: str
) -> None:
    """A sink URL's token and password, echoed back by its receiver, reach no log or store."""
    sim = Simulator()
    with SimulatorServer(sim) as server, EchoingReceiver() as receiver:
        url = receiver.url.replace("://", f"://hook:{SINK_PASSWORD}@") + f"?token={SINK_TOKEN}"
        config = make_config(
            server.url, None, store_file, sinks=[{"name": "hook", "type": "http", "url": url}]
        )
        logs.configure(level="debug", fmt="json", stream=rendered, secrets=secrets_of(config))
        async with App(config) as app:
            runner = Runner(app)
            await runner.once()
            sim.create_file(filename="news.jsonl")
            await runner.once()
    lines = [json.loads(line) for line in rendered.getvalue().splitlines()]
    assert "delivery_failed" in {line["event"] for line in lines}
    dump = "\n".join(sqlite3.connect(store_file.removeprefix("sqlite:///")).iterdump())
    assert "/hook?token=" in dump  # the echo was recorded...
    for secret in (SINK_PASSWORD, SINK_TOKEN):  # ...without the credentials
        assert secret not in rendered.getvalue()
        assert secret not in dump


def _library_exception(message: str) -> None:
    """Log an exception through a stdlib logger, as APScheduler does, after its handler."""
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        error = exc
    logging.getLogger("apscheduler.executors.default").error(
        "Job raised an exception", exc_info=error
    )


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_library_tracebacks_are_masked(rendered: io.StringIO, fmt: str) -> None:
    """A library's logged traceback is rendered with the configured secrets masked."""
    logs.configure(level="info", fmt=fmt, stream=rendered, secrets=[API_KEY])
    _library_exception(f"refused {API_KEY}")
    assert "RuntimeError: refused ***" in rendered.getvalue()
    assert API_KEY not in rendered.getvalue()


@pytest.mark.parametrize("status", [200, 500])
async def test_sinks_test_shows_no_echoed_secret(status: int, store_file: str) -> None:
    """`poller sinks test` prints a receiver's answer with the sink's credentials masked."""
    with EchoingReceiver(status) as receiver:
        url = receiver.url + f"?token={SINK_TOKEN}"
        hook = {
            "name": "hook",
            "type": "http",
            "url": url,
            "headers": {"X-Receiver-Token": SINK_TOKEN},
        }
        config = make_config("http://127.0.0.1:9/v1", None, store_file, sinks=[hook])
        event, outcome = await sinkcheck.send(config, config.sinks[0], now=utils.utcnow())
    line = sinkcheck.describe("hook", event, outcome)
    assert outcome.ok is (status == 200)
    assert "/hook?token=***" in line
    assert SINK_TOKEN not in line
