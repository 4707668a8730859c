"""Counts of the requests the simulator answered, for tests and benchmarks."""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

RECENT = 1000


class RequestStats:
    """Requests counted by ``"METHOD /route/{template}"``, and the last ``RECENT`` in full."""

    def __init__(self) -> None:
        self.by_route: Counter[str] = Counter()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)

    def record(self, method: str, route: str, path: str, query: str, url: str, at: float) -> None:
        self.by_route[f"{method} {route}"] += 1
        self.recent.append(
            {"method": method, "path": path, "query": query, "url": url, "route": route, "at": at}
        )

    def clear(self) -> None:
        self.by_route.clear()
        self.recent.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": sum(self.by_route.values()),
            "by_route": dict(self.by_route),
            "recent": list(self.recent),
        }
