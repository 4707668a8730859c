"""Every error poller raises on purpose.

::

    PollerError
    ├── ConfigError            the configuration is invalid; one line per problem, each saying
    │                          what to change
    ├── UsageError             command-line input poller cannot use (a missing file, bad JSON)
    ├── ServiceError           a part of the daemon (a listener) stopped on its own
    ├── StoreError             the store cannot be opened or used
    │   ├── SchemaVersionError the database was written by an incompatible poller
    │   └── StoreInUseError    another `poller run` already uses this SQLite store
    ├── LeaseLost              this replica no longer leads the workspace it polled
    ├── WorkspaceLed           `poller once` found a workspace a live replica leads
    └── ApiError               the Mistral API did not give a usable answer
        ├── AuthError          401/403: the API key is wrong or lacks access
        ├── NotFoundError      404 on a path that should exist
        ├── RateLimitedError   429 after retries; carries ``retry_after``
        ├── ServerError        5xx after retries
        ├── UnreachableError   connection failure or timeout after retries
        └── GarbledError       a 2xx whose body is not what the contract promises
"""

from __future__ import annotations

from collections.abc import Sequence


class PollerError(Exception):
    """Base class of every error poller raises on purpose."""


class ConfigError(PollerError):
    """The configuration is invalid.

    Each problem is one line naming the file, the line (when known), the key and what to
    change. An error found with others holds them all in ``problems`` (in file order) and
    its ``str()`` has one line each; a lone error's ``problems`` is itself.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        path: str | None = None,
        line: int | None = None,
        problems: Sequence[ConfigError] = (),
    ) -> None:
        self.message = message
        self.key = key
        self.path = path
        self.line = line
        self.problems: tuple[ConfigError, ...] = tuple(problems) or (self,)
        super().__init__("\n".join(problem.render() for problem in self.problems))

    @classmethod
    def several(cls, problems: Sequence[ConfigError]) -> ConfigError:
        """One error standing for ``problems`` (at least one), named after the first."""
        if len(problems) == 1:
            return problems[0]
        first = problems[0]
        return cls(
            first.message, key=first.key, path=first.path, line=first.line, problems=problems
        )

    def render(self) -> str:
        where = ""
        if self.path:
            where = f"{self.path}:{self.line}: " if self.line else f"{self.path}: "
        key = f"{self.key}: " if self.key else ""
        return f"{where}{key}{self.message}"


class UsageError(PollerError):
    """Input given on the command line that poller cannot use; the message says what to change."""


class ServiceError(PollerError):
    """A part of the running daemon (the ops listener, the proxy) stopped on its own."""


class StoreError(PollerError):
    """The store cannot be opened or used."""


class SchemaVersionError(StoreError):
    """The database holds a schema this version of poller does not know."""


class StoreInUseError(StoreError):
    """Another ``poller run`` holds the lock of this SQLite store (one daemon per file)."""


class LeaseLost(PollerError):
    """The poll's workspace lease is no longer this replica's: its write is refused (fencing)."""


class WorkspaceLed(PollerError):
    """A workspace ``poller once`` was to poll is led by a live replica: it polls nothing."""


class ApiError(PollerError):
    """The Mistral API did not give a usable answer."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.method = method
        self.path = path
        super().__init__(self.render())

    def render(self) -> str:
        prefix = f"{self.method} {self.path}: " if self.method and self.path else ""
        code = f"HTTP {self.status_code}: " if self.status_code else ""
        return f"{prefix}{code}{self.message}"


class AuthError(ApiError):
    """The API refused our credentials (401/403)."""


class NotFoundError(ApiError):
    """The API answered 404."""


class RateLimitedError(ApiError):
    """The API kept answering 429."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(ApiError):
    """The API kept answering 5xx."""


class UnreachableError(ApiError):
    """The API could not be reached (connection error or timeout)."""


class GarbledError(ApiError):
    """A 2xx answer whose body is not what the API contract promises."""
