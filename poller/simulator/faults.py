"""Injected faults: what a matching request gets instead of (or on top of) its answer.

A fault matches requests by method and path prefix and hits the next ``count`` of
them (``-1``: until cleared). Faults are tried in the order they were added; a
request is hit by the first one that matches.
"""

from __future__ import annotations

import http
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from poller.simulator.errors import InvalidRequest

KINDS = ("status", "delay", "garbled", "empty", "truncate", "disconnect")

# what a garbled answer looks like when no body is given: JSON cut off mid-way
GARBLED_BODY = '{"data": [{"id": "'
EMPTY_LIST: dict[str, Any] = {"data": [], "object": "list", "total": 0}
EMPTY_RUNS: dict[str, Any] = {"executions": [], "next_page_token": None}
LIST_KEYS = ("data", "executions")
"""Where a list answer keeps its items (``executions``: the workflow runs list)."""


def empty_list(path: str) -> dict[str, Any]:
    """What an ``empty`` fault answers on ``path``: a list with nothing in it."""
    return EMPTY_RUNS if path.startswith("/v1/workflows/runs") else EMPTY_LIST


def error_body(message: str) -> dict[str, Any]:
    """Mistral's error object."""
    return {
        "object": "error",
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


@dataclass(frozen=True)
class Fault:
    """One queued fault; ``remaining`` is how many more requests it hits (-1: no end)."""

    id: str
    kind: str
    method: str | None = None
    path: str | None = None
    remaining: int = 1
    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    drop: int = 1
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method.upper()) and (
            self.path is None or path.startswith(self.path)
        )

    def response_body(self) -> Any:
        """The body a ``status`` fault answers with."""
        if self.body is not None:
            return self.body
        if self.status == 429:
            return error_body("Requests rate limit exceeded")
        try:
            return error_body(http.HTTPStatus(self.status).phrase)
        except ValueError:
            return error_body("Error")

    def as_dict(self) -> dict[str, Any]:
        match: dict[str, str] = {}
        if self.method is not None:
            match["method"] = self.method
        if self.path is not None:
            match["path"] = self.path
        shown: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "match": match,
            "count": self.remaining,
            "hits": self.hits,
        }
        extras: dict[str, dict[str, Any]] = {
            "status": {"status": self.status, "body": self.body, "headers": dict(self.headers)},
            "delay": {"seconds": self.seconds},
            "garbled": {"body": self.body},
            "truncate": {"drop": self.drop},
        }
        return shown | extras.get(self.kind, {})


def make_fault(
    id: str,
    *,
    kind: str,
    match: Mapping[str, str] | None = None,
    count: int = 1,
    status: int | None = None,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    seconds: float | None = None,
    drop: int | None = None,
) -> Fault:
    """A validated fault; raises ``InvalidRequest`` naming what is wrong."""
    if kind not in KINDS:
        raise InvalidRequest(f"fault kind {kind!r} is unknown; use one of {', '.join(KINDS)}")
    match = dict(match or {})
    unknown = set(match) - {"method", "path"}
    if unknown:
        raise InvalidRequest(f"fault match keys {sorted(unknown)} are unknown; use method, path")
    if count == 0 or count < -1:
        raise InvalidRequest("fault count must be a positive number of requests, or -1")
    if status is not None and not 100 <= status <= 599:
        raise InvalidRequest(f"fault status {status} is not an HTTP status code")
    if seconds is not None and seconds < 0:
        raise InvalidRequest("fault seconds must be zero or more")
    if drop is not None and drop < 0:
        raise InvalidRequest("fault drop must be zero or more")
    method = match.get("method")
    return Fault(
        id=id,
        kind=kind,
        method=method.upper() if method else None,
        path=match.get("path") or None,
        remaining=count,
        status=500 if status is None else status,
        body=body,
        headers={str(k): str(v) for k, v in (headers or {}).items()},
        seconds=0.0 if seconds is None else float(seconds),
        drop=1 if drop is None else drop,
    )


class FaultQueue:
    """Faults in the order they were added; not thread-safe (the simulator locks)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def clear(self) -> int:
        cleared = len(self._faults)
        self._faults.clear()
        return cleared

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching the request, counted as one hit; ``None`` if none."""
        for i, fault in enumerate(self._faults):
            if fault.matches(method, path):
                left = fault.remaining - 1 if fault.remaining > 0 else -1
                hit = replace(fault, remaining=left, hits=fault.hits + 1)
                if left == 0:
                    del self._faults[i]
                else:
                    self._faults[i] = hit
                return hit
        return None

    def as_list(self) -> list[dict[str, Any]]:
        return [fault.as_dict() for fault in self._faults]
