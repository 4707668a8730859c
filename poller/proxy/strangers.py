"""Calls made with a key no configured workspace has: recorded nowhere, counted, named once.

A call is recorded under the workspace whose ``api_key`` it carries. One the API accepts
with any other key (a key of an account poller does not poll, a colleague's key) records
nothing: it is counted each time (``count``, a metric labelled by what the call would have
recorded) and logged once per key, by its fingerprint (``guard.fingerprint``), never by the
key itself. At most ``remember`` fingerprints are kept; the oldest is forgotten first.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from poller.proxy import guard

log = structlog.get_logger("poller.proxy")

TRIGGER, HINT = "trigger", "hint"
KINDS = (TRIGGER, HINT)
"""What an unattributed call would have recorded: a synchronous trigger, or a hint."""


class Strangers:
    """Counts the calls of unknown keys and logs the first call of each key."""

    def __init__(
        self, *, count: Callable[[str], None] = lambda kind: None, remember: int = 1024
    ) -> None:
        self._count = count
        self._remember = remember
        self._seen: dict[str, None] = {}

    def saw(self, credential: bytes | None, *, kind: str, path: str) -> None:
        """A call whose ``credential`` names no workspace was answered 2xx; it records nothing."""
        self._count(kind)
        name = guard.fingerprint(credential)
        if name in self._seen:
            return
        if len(self._seen) >= self._remember:
            del self._seen[next(iter(self._seen))]
        self._seen[name] = None
        log.warning(
            "proxy_key_unknown",
            key_fingerprint=name,
            path=path.partition("?")[0],
            consequence="calls with this key are forwarded but record no event; "
            "give the key to a workspace (api_key) to record them",
        )
