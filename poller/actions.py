"""The seed's four actions: build the request, call the API, record the trigger.

``chat_body``, ``image_body`` and ``embeddings_body`` build the seed's request bodies;
``call`` sends any request with the workspace's key, writes the answer out as it
arrives (a stream chunk by chunk, as JSON lines) and records the event the proxy would
record for the same call — through the same builder, ``poller.synchronous``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import mimetypes
import pathlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx

from poller import hints, synchronous
from poller.exceptions import (
    UnreachableError,
    UsageError,
)
from poller.mistral import client as client_mod
from poller.mistral.auth import auth_headers
from poller.model import Event
from poller.proxy import stream

if TYPE_CHECKING:
    from poller.app import App

IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
DEFAULT_READ_TIMEOUT = 600.0

Out = Callable[[bytes], None]


def chat_body(
    model: str,
    content: str,
    *,
    temperature: float = 0.7,
    max_tokens: int = 1024,
    stream: bool = False,
) -> dict[str, Any]:
    """The seed's chat completion body: one user message, temperature and max_tokens."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": content}],
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    if stream:
        body["stream"] = True
    return body


def image_url_of(*, image_url: str | None, image_file: str | None) -> str:
    """The image as a URL: the one given, or a local file as a base64 ``data:`` URL."""
    if (image_url is None) == (image_file is None):
        raise UsageError("give exactly one of --image-url URL and --image-file PATH")
    if image_url is not None:
        return image_url
    path = pathlib.Path(str(image_file))
    kind = mimetypes.guess_type(path.name)[0]
    if kind not in IMAGE_TYPES:
        raise UsageError(
            f"--image-file {path}: not a PNG, JPEG, GIF or WebP image (by its name); "
            "pass one of those, or --image-url"
        )
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--image-file {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--image-file {path}: cannot read it ({exc.strerror})") from None
    return f"data:{kind};base64,{base64.b64encode(data).decode()}"


def image_body(model: str, prompt: str, image: str) -> dict[str, Any]:
    """A vision chat completion: the prompt as a text chunk, the image as an image_url chunk."""
    return {
        "model": model,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": prompt},
                    {"type": "image_url", "image_url": image},
                ],
            }
        ],
    }


def embeddings_body(model: str, inputs: list[str]) -> dict[str, Any]:
    """The seed's embeddings body, with every input in one request."""
    if not inputs:
        raise UsageError("give at least one --input TEXT")
    return {"model": model, "input": inputs}


def parse_json(text: str, option: str = "--json") -> Any:
    """A JSON value given on the command line; ``UsageError`` saying where it breaks."""
    try:
        return json.loads(text)
    except ValueError as exc:
        where = ""
        if isinstance(exc, json.JSONDecodeError):
            where = f" ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        raise UsageError(
            f"{option} is not valid JSON{where}; pass one JSON value, e.g. "
            """--json '{"model": "mistral-embed", "input": "hi"}'"""
        ) from None


def read_json_file(path: str) -> Any:
    """The JSON value in a file (``--json-file``)."""
    try:
        text = pathlib.Path(path).read_text()
    except FileNotFoundError:
        raise UsageError(f"--json-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--json-file {path}: cannot read it ({exc})") from None
    return parse_json(text, f"--json-file {path}")


def api_path(path: str, base_url: str) -> str:
    """``path`` relative to the workspace's base URL; a leading ``/v1`` is accepted."""
    path = path.strip()
    if not path.startswith("/"):
        path = "/" + path
    if base_url.rstrip("/").endswith("/v1") and (path == "/v1" or path.startswith("/v1/")):
        path = path[3:] or "/"
    return path


@dataclasses.dataclass(frozen=True)
class Result:
    """What an action did: the events it recorded (new or not), or why none."""

    status: int
    events: tuple[Event, ...]
    skipped: str | None


async def call(
    app: App,
    method: str,
    path: str,
    body: Any = None,
    *,
    out: Out,
    workspace: str | None = None,
) -> Result:
    """Call the API with the workspace's key, write the answer to ``out``, record its trigger.

    A 2xx answer is written as received; a stream is written one JSON line per chunk as
    it arrives. Any other answer raises ``ApiError`` (``AuthError`` for 401/403,
    ``NotFoundError`` for 404) carrying the API's message; no answer raises
    ``UnreachableError``.
    """
    names = [ws.name for ws in app.config.workspaces]
    name = workspace or names[0]
    if name not in names:
        raise UsageError(f"no workspace named {name!r}; known: {', '.join(names)}")
    ws = app.config.workspace(name)
    proxy = app.config.proxy
    client = app.api_client(
        ws, read_timeout=proxy.read_timeout if proxy is not None else DEFAULT_READ_TIMEOUT
    )
    method = method.upper()
    path = api_path(path, ws.base_url)
    content = None if body is None else json.dumps(body).encode()
    headers = {"accept": "application/json, text/event-stream", **auth_headers(ws)}
    if content is not None:
        headers["content-type"] = "application/json"
    started = app.clock()
    try:
        request = client.build_request(method, path, headers=headers, content=content)
    except httpx.InvalidURL as exc:
        raise UsageError(f"{path}: not a usable API path ({exc})") from None
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        raise UnreachableError(
            f"the Mistral API at {ws.base_url} did not answer in time",
            method=method,
            path=path,
        ) from None
    except httpx.HTTPError as exc:
        raise UnreachableError(
            f"cannot reach the Mistral API at {ws.base_url} ({type(exc).__name__}); "
            "check mistral.base_url",
            method=method,
            path=path,
        ) from None
    try:
        if not 200 <= response.status_code < 300:
            raise client_mod.refusal(
                response.status_code,
                client_mod.message_of(await response.aread(), response.reason_phrase),
                method=method,
                path=path,
            )
        kind = response.headers.get("content-type", "")
        if kind.split(";", 1)[0].strip().lower() == "text/event-stream":
            assembler = stream.Assembler(keep_content=False)
            parts = []
            async for piece in response.aiter_bytes():
                parts.append(piece)
                for payload in assembler.feed(piece):
                    if payload.strip() != stream.DONE:
                        out(payload.encode() + b"\n")
            received = b"".join(parts)
        else:
            received = await response.aread()
            out(received if received.endswith(b"\n") else received + b"\n")
    except httpx.HTTPError as exc:
        raise UnreachableError(
            f"the answer broke off ({type(exc).__name__})", method=method, path=path
        ) from None
    finally:
        await response.aclose()
    observed = synchronous.Call(
        method=method,
        path=path.partition("?")[0],
        request_body=content or b"",
        status=response.status_code,
        content_type=response.headers.get("content-type", ""),
        content_encoding=None,  # aiter_bytes/aread decoded it already
        body=received,
        started_at=started,
        finished_at=app.clock(),
    )
    outcome = synchronous.events(
        observed,
        workspace=ws.name,
        record_content=proxy.record_content if proxy is not None else True,
    )
    if outcome.events:
        await asyncio.to_thread(app.store.enqueue, list(outcome.events), app.clock())
        return Result(response.status_code, outcome.events, outcome.skipped)
    hint = hints.read(observed, ws.name, polled=ws.sources.enabled())
    if hint is None:
        return Result(response.status_code, (), outcome.skipped)
    recorded = await asyncio.to_thread(hints.record, app.store, hint)
    return Result(response.status_code, tuple(recorded), None)
