"""An HTTP client for the parts of Mistral's API poller reads.

It pages through ``{data, object, total}`` lists, retries what is worth retrying
(connection errors, timeouts, 5xx, 429 with its ``Retry-After``) with tenacity around one
call, and turns every other answer into an exception from ``poller.exceptions`` whose
message is safe to log: it never carries a header, so never the API key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog
import tenacity

from poller import utils
from poller.exceptions import (
    ApiError,
    AuthError,
    GarbledError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnreachableError,
)
from poller.mistral.pace import Gate

log = structlog.get_logger("poller.mistral")

Params = Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class Listing:
    """The items of a list endpoint and whether they are all of them."""

    items: list[dict[str, Any]]
    complete: bool
    total: int | None = None
    pages: int = 1


def error_message(response: httpx.Response) -> str:
    """The API's own explanation of an error answer, whatever shape it came in."""
    return message_of(response.content, response.reason_phrase or "no message")


def message_of(body: bytes, fallback: str = "no message") -> str:
    """What an error body says: Mistral's ``message``, else ``detail`` (string or list)."""
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = body.decode("utf-8", errors="replace").strip().replace("\n", " ")
        return text[:200] or fallback
    if isinstance(doc, dict):
        message = doc.get("message")
        if isinstance(message, str) and message:
            return message[:500]
        detail = doc.get("detail")
        if isinstance(detail, str) and detail:
            return detail[:500]
        if isinstance(detail, list) and detail:
            parts = []
            for item in detail[:5]:
                if isinstance(item, dict):
                    loc = ".".join(str(x) for x in item.get("loc", []) if x != "query")
                    msg = item.get("msg", "")
                    parts.append(f"{loc}: {msg}" if loc else str(msg))
                else:
                    parts.append(str(item))
            return "; ".join(parts)[:500]
    return fallback[:200]


def refusal(status: int, message: str, *, method: str, path: str) -> ApiError:
    """The error for a 4xx answer that retrying will not mend."""
    if status in (401, 403):
        return AuthError(
            f"the API refused the credentials ({message}); check the workspace's api_key",
            status_code=status,
            method=method,
            path=path,
        )
    if status == 404:
        return NotFoundError(message, status_code=status, method=method, path=path)
    return ApiError(message, status_code=status, method=method, path=path)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, UnreachableError | ServerError | RateLimitedError)


def _wait(max_wait: float) -> Callable[[tenacity.RetryCallState], float]:
    backoff = tenacity.wait_exponential(multiplier=0.5, max=max_wait) + tenacity.wait_random(0, 0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
            return min(exc.retry_after, max_wait)
        return float(backoff(state))

    return wait


class MistralClient:
    """Reads Mistral's API for one workspace over an ``httpx.AsyncClient`` it is given.

    The client carries the base URL and the auth header; this class never sees the key.
    ``observe``, when given, hears of every HTTP exchange: the error it raised (None for a
    2xx) and how many seconds it took (metrics).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        page_size: int = 100,
        attempts: int = 4,
        max_wait: float = 30.0,
        gate: Gate | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_pages: int = 100_000,
        observe: Callable[[BaseException | None, float], None] | None = None,
    ) -> None:
        self.http = http
        self.page_size = page_size
        self.attempts = attempts
        self.max_wait = max_wait
        self.gate = gate or Gate()
        self.sleep = sleep
        self.max_pages = max_pages
        self.observe = observe
        self.requests = 0

    async def _send_once(self, method: str, path: str, params: Params | None) -> httpx.Response:
        await self.gate.acquire()
        self.requests += 1
        started = time.perf_counter()
        try:
            response = await self._exchange(method, path, params)
        except ApiError as exc:
            if self.observe is not None:
                self.observe(exc, time.perf_counter() - started)
            raise
        if self.observe is not None:
            self.observe(None, time.perf_counter() - started)
        return response

    async def _exchange(self, method: str, path: str, params: Params | None) -> httpx.Response:
        """One HTTP exchange: the 2xx response, or the ``ApiError`` its answer means."""
        try:
            response = await self.http.request(method, path, params=params)
        except httpx.TimeoutException as exc:
            raise UnreachableError(
                f"timed out ({type(exc).__name__})", method=method, path=path
            ) from None
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise UnreachableError(
                f"cannot reach the API: {reason}", method=method, path=path
            ) from None
        status = response.status_code
        if status < 400:
            if 300 <= status:
                raise ApiError(
                    "unexpected redirect; check mistral.base_url",
                    status_code=status,
                    method=method,
                    path=path,
                )
            return response
        message = error_message(response)
        if status in (401, 403, 404):
            raise refusal(status, message, method=method, path=path)
        if status == 429:
            retry_after = utils.parse_retry_after(response.headers.get("retry-after"))
            self.gate.pause(retry_after if retry_after is not None else 1.0)
            raise RateLimitedError(
                f"rate limited ({message})",
                retry_after=retry_after,
                status_code=status,
                method=method,
                path=path,
            )
        if status >= 500:
            raise ServerError(message, status_code=status, method=method, path=path)
        raise refusal(status, message, method=method, path=path)

    async def request(self, method: str, path: str, params: Params | None = None) -> Any:
        """One API call with retries; the decoded JSON body of its 2xx answer."""
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception(_retryable),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=_wait(self.max_wait),
            sleep=self.sleep,
            reraise=True,
            before_sleep=self._log_retry,
        )
        async for attempt in retrying:
            with attempt:
                response = await self._send_once(method, path, params)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise GarbledError(
                "the answer is not JSON", status_code=response.status_code, method=method, path=path
            ) from None

    @staticmethod
    def _log_retry(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.info(
            "api_retry",
            attempt=state.attempt_number,
            wait_s=round(state.upcoming_sleep, 3),
            error=str(exc),
        )

    async def get_object(self, path: str) -> dict[str, Any] | None:
        """One JSON object, or ``None`` when the API answers 404 (it does not exist)."""
        try:
            body = await self.request("GET", path)
        except NotFoundError:
            return None
        if not isinstance(body, dict):
            raise GarbledError("the answer is not an object", method="GET", path=path)
        return body

    async def get_item(self, path: str) -> dict[str, Any] | None:
        """One object with an ``id``, or ``None`` when the API answers 404."""
        body = await self.get_object(path)
        if body is not None and (not isinstance(body.get("id"), str) or not body["id"]):
            raise GarbledError("the answer is not an object with an id", method="GET", path=path)
        return body

    async def list_page(
        self, path: str, *, page: int, page_size: int, params: Params | None = None
    ) -> Listing:
        """One page of a paged list endpoint, with the ``total`` it answered (or None)."""
        query = {**(params or {}), "page": page, "page_size": page_size, "include_total": "true"}
        body = await self.request("GET", path, query)
        items = items_of(body, path)
        total = _total(body)
        complete = total is not None and page == 0 and len(items) >= total
        return Listing(items=items, complete=complete, total=total)

    def pages(self, path: str, *, params: Params | None = None, paged: bool = True) -> Pages:
        """The pages of a list endpoint, one at a time (``async for items in ...``)."""
        return Pages(self, path, dict(params or {}), paged)

    async def list_all(
        self, path: str, *, params: Params | None = None, paged: bool = True
    ) -> Listing:
        """Every item of a list endpoint at once (for listings known to be small)."""
        pager = self.pages(path, params=params, paged=paged)
        items = [item async for page in pager for item in page]
        return Listing(items=items, complete=pager.complete, total=pager.total, pages=pager.count)


class Pages:
    """The pages of a list endpoint, following 0-based ``page``/``page_size``.

    Each item is yielded once even if it moves between pages while they are read. Once
    exhausted, ``complete`` says whether the pages added up to the ``total`` the API
    announced: an incomplete listing can show what exists, never what was deleted.
    """

    def __init__(self, client: MistralClient, path: str, params: dict[str, Any], paged: bool):
        self.client = client
        self.path = path
        self.params = params
        self.paged = paged
        self.total: int | None = None
        self.size = client.page_size
        """The page size pages are read at (smaller when the API caps it)."""
        self.count = 0
        self.seen: set[str] = set()
        self.complete = False

    def __aiter__(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[dict[str, Any]]]:
        size = self.size
        while True:
            params = dict(self.params)
            if self.paged:
                params.update(page=self.count, page_size=size)
            body = await self.client.request("GET", self.path, params)
            items = items_of(body, self.path)
            if self.count == 0 and self.paged:
                self.total = _total(body)
            self.count += 1
            fresh = [item for item in items if item["id"] not in self.seen]
            self.seen.update(item["id"] for item in fresh)
            yield fresh
            if (
                self.count == 1
                and self.paged
                and 0 < len(items) < size
                and self.total is not None
                and len(items) < self.total
            ):
                # the API serves smaller pages than asked for: page on at its size
                size = self.size = len(items)
                continue
            if not self.paged or len(items) < size:
                break
            if self.total is not None and self.count * size >= self.total:
                break
            if self.count >= self.client.max_pages:
                raise GarbledError(
                    f"more than {self.client.max_pages} pages", method="GET", path=self.path
                )
        self.complete = self.total is None or len(self.seen) >= self.total


def _total(body: Any) -> int | None:
    """The ``total`` a list answer announced, if it is a count."""
    raw = body.get("total") if isinstance(body, dict) else None
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
        return raw
    return None


def items_of(body: Any, path: str) -> list[dict[str, Any]]:
    """The ``data`` items of a list answer, each an object with a string ``id``."""
    if not isinstance(body, dict):
        raise GarbledError("the list answer is not an object", method="GET", path=path)
    data = body.get("data")
    if not isinstance(data, list):
        raise GarbledError("the list answer has no 'data' list", method="GET", path=path)
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise GarbledError("a listed item has no string 'id'", method="GET", path=path)
    return data
