"""Errors the simulator raises; the app maps each to the HTTP answer Mistral would give.

::

    SimulatorError
    ├── NotFound        no resource of that kind has that id               → 404
    ├── InvalidRequest  a bad argument, or a move the job cannot make       → 400
    └── Unprocessable   a request that does not fit the API's schemas       → 422
"""

from __future__ import annotations

from typing import Any


class SimulatorError(Exception):
    """Base class of the simulator's errors."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(SimulatorError, LookupError):
    """No resource of the given kind has the given id."""


class InvalidRequest(SimulatorError, ValueError):
    """An argument is invalid, or the job cannot make the requested transition."""


class Unprocessable(SimulatorError, ValueError):
    """A request that fails validation; ``detail`` is an ``HTTPValidationError``'s."""

    def __init__(self, detail: list[dict[str, Any]]) -> None:
        self.detail = detail
        super().__init__("; ".join(f"{d['loc']}: {d['msg']}" for d in detail))
