"""``build_app``: the simulator as an ASGI application (Starlette).

Every ``/v1`` request passes a gate before it is routed: it is counted in the
stats, it may be hit by a queued fault, then it must be authorised (when the
simulator has an API key). ``/_sim`` requests skip the gate.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import URL, Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from poller.simulator import api, control, inference, library_routes
from poller.simulator.errors import InvalidRequest, NotFound, Unprocessable
from poller.simulator.faults import EMPTY_LIST, GARBLED_BODY, Fault, error_body
from poller.simulator.state import Simulator

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")
"""A path parameter's convertor (``{id:path}``), left out of the stats' route names."""


def build_app(sim: Simulator) -> Starlette:
    """An ASGI app serving ``sim``: the API under ``/v1``, the control API under ``/_sim``."""
    api_routes = [
        *api.routes(sim),
        *inference.routes(sim, sim.inference, sim.now),
        *library_routes.routes(sim),
    ]
    controls = [*library_routes.control_routes(sim), *control.routes(sim)]
    return _SimulatorApp(
        sim,
        api_routes,
        routes=[*api_routes, *controls, *inference.control_routes(sim.inference)],
        exception_handlers={
            NotFound: _not_found,
            InvalidRequest: _invalid,
            Unprocessable: _unprocessable,
            HTTPException: _http_error,
        },
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(str(exc)), status_code=404)


async def _invalid(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(str(exc)), status_code=400)


async def _unprocessable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unprocessable)
    return JSONResponse({"detail": exc.detail}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(error_body(exc.detail), status_code=exc.status_code, headers=exc.headers)


class _SimulatorApp(Starlette):
    """Starlette with the ``/v1`` gate in front of its routing."""

    def __init__(self, sim: Simulator, api_routes: list[Route], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sim = sim
        self._api_routes = api_routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == "/v1" or path.startswith("/v1/")):
            gated = await self._gate(scope, receive, send)
            if gated is None:
                return
            send = gated
        await super().__call__(scope, receive, send)

    def _template(self, scope: Scope) -> str:
        for route in self._api_routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return _CONVERTOR.sub(r"{\1}", route.path)
        return str(scope["path"])

    async def _gate(self, scope: Scope, receive: Receive, send: Send) -> Send | None:
        """Count, fault and authorise a ``/v1`` request; the send to route it with, or None."""
        sim = self.sim
        method, path = scope["method"], scope["path"]
        query = scope.get("query_string", b"").decode("latin-1")
        sim.record_request(method, self._template(scope), path, query, str(URL(scope=scope)))
        fault = sim.take_fault(method, path)
        if fault is not None:
            response = await _suffer(fault, send)
            if response is None:
                return None
            if isinstance(response, Response):
                await response(scope, receive, send)
                return None
            send = response
        if not sim.authorized(Headers(scope=scope).get(sim.auth_header)):
            await JSONResponse(error_body("Unauthorized"), status_code=401)(scope, receive, send)
            return None
        if not sim.fine_tuning and path.startswith("/v1/fine_tuning"):
            await JSONResponse(error_body("Not Found"), status_code=404)(scope, receive, send)
            return None
        return send


async def _suffer(fault: Fault, send: Send) -> Response | Send | None:
    """What ``fault`` does to a request: an answer of its own, a send to route with, or None."""
    if fault.kind == "status":
        body = fault.response_body()
        if isinstance(body, str):
            return Response(body, status_code=fault.status, headers=dict(fault.headers))
        return JSONResponse(body, status_code=fault.status, headers=dict(fault.headers))
    if fault.kind == "garbled":
        if fault.body is None or isinstance(fault.body, str):
            text = GARBLED_BODY if fault.body is None else fault.body
            return Response(text, media_type="application/json")
        return JSONResponse(fault.body)
    if fault.kind == "empty":
        return JSONResponse(EMPTY_LIST)
    if fault.kind == "disconnect":
        await _disconnect(send)
        return None
    if fault.kind == "delay":
        await asyncio.sleep(fault.seconds)
        return send
    return _truncating(send, fault.drop)


async def _disconnect(send: Send) -> None:
    """Close the connection without answering."""
    # uvicorn's send is a method of the request cycle, which holds the connection
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if isinstance(transport, asyncio.BaseTransport):
        transport.close()
        # let the server see the connection is gone, so that it neither answers nor logs
        for _ in range(3):
            await asyncio.sleep(0)
        return
    # any other server: failing before the answer starts at least breaks the exchange
    raise ConnectionAbortedError("simulated disconnect")


def _truncating(send: Send, drop: int) -> Send:
    """A send that drops the last ``drop`` items of a list answer's ``data``."""
    start: Message = {}
    chunks: list[bytes] = []

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        body = _drop_items(b"".join(chunks), drop)
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return wrapped


def _drop_items(body: bytes, drop: int) -> bytes:
    try:
        answer = json.loads(body)
    except ValueError:
        return body
    if not isinstance(answer, dict) or not isinstance(answer.get("data"), list) or drop <= 0:
        return body
    answer["data"] = answer["data"][: max(0, len(answer["data"]) - drop)]
    return json.dumps(answer, separators=(",", ":")).encode()
