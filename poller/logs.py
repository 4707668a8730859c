"""Structured logs: JSON lines off a terminal, readable colour on one, secrets masked.

The libraries' stdlib logging goes through the same chain (structlog's
``ProcessorFormatter``): one JSON object per line whoever wrote it, ``logger`` naming it.
The broker client libraries in ``QUIET`` log a dropped connection as an error with its
traceback, though poller connects again itself and reports a failing sink in its own
words (``delivery_failed``, ``sink_failing``): their records are kept at debug.

Every log line passes through ``Redactor``, which masks the configured secrets (API keys,
webhook secrets, the proxy token) wherever they appear in the event dict, and the values
of keys that name credentials (``authorization``, ``api_key``, ``secret``, ``token``…).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, TextIO

import structlog

MASK = "***"
_SENSITIVE_KEY = re.compile(r"(authorization|api[_-]?key|secret|token|password|cookie)", re.I)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
QUIET = ("aio_pika", "aiormq")
"""Loggers (and their children) whose records are shown at debug, whatever their level."""
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Redactor:
    """A structlog processor that masks secrets anywhere in an event dict."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # longest first, so a secret that contains another is masked whole
        self.secrets = tuple(
            sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        )

    def redact(self, text: str) -> str:
        """``text`` with the known secrets and ``Bearer``/``Basic`` credentials masked."""
        return self._text(text)

    def _text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return _BEARER.sub(lambda m: f"{m.group(1)} {MASK}", text)

    def _value(self, value: Any, depth: int = 0) -> Any:
        if depth > 8:
            return value
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, Mapping):
            return {k: self._item(k, v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._value(v, depth + 1) for v in value)
        if isinstance(value, BaseException):
            return self._text(str(value))
        return value

    def _item(self, key: Any, value: Any, depth: int) -> Any:
        if isinstance(key, str) and _SENSITIVE_KEY.search(key) and isinstance(value, str) and value:
            return MASK
        return self._value(value, depth)

    def __call__(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key in list(event_dict):
            event_dict[key] = self._item(key, event_dict[key], 0)
        return event_dict


REDACTOR = Redactor()
"""The process's redactor; ``configure`` loads the secrets of the current config into it."""


class Quieted(logging.Filter):
    """Lowers the records of ``QUIET`` loggers to debug; drops them unless debug is shown."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.shown = level <= logging.DEBUG

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.partition(".")[0] not in QUIET:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return self.shown


def colour(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether lines written to ``stream`` may carry ANSI colour.

    Only on a terminal, and never while ``NO_COLOR`` is set to anything but the empty
    string (https://no-color.org).
    """
    env = os.environ if environ is None else environ
    tty = hasattr(stream, "isatty") and stream.isatty()
    return tty and not env.get("NO_COLOR")


def _renderer(fmt: str, stream: TextIO) -> Any:
    tty = hasattr(stream, "isatty") and stream.isatty()
    if fmt == "console" or (fmt == "auto" and tty):
        return structlog.dev.ConsoleRenderer(colors=colour(stream))
    return structlog.processors.JSONRenderer()


def configure(
    *,
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog (and the stdlib loggers of libraries) for this process."""
    out = stream or sys.stderr
    REDACTOR.update(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = _renderer(fmt, out)
    # tracebacks become text before the redactor reads them: left as exc_info, the
    # renderers would drop them (JSON) or format them unmasked (console)
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.addFilter(Quieted(LEVELS.get(level, logging.INFO)))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared,
                structlog.processors.format_exc_info,
                REDACTOR,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.WARNING)
    for noisy in ("httpx", "httpcore", "apscheduler", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
