"""Translating pydantic's ``ValidationError`` into ``ConfigError`` lines, one per problem.

Every key pydantic finds at fault gets one line, in file order; its message names the key
and says what to change, never showing the value itself (it may be a secret). Where
pydantic reports a key and also something inside it (the members of a union), the deeper
report says more and the outer one is dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from poller.config.fields import SINK_NAME, WORKSPACE_NAME
from poller.config.models import SINK_TYPES
from poller.config.reader import Path, Where, one_line
from poller.exceptions import ConfigError

_MISSING = {
    "url": "missing; an http sink needs the URL that receives the webhooks, "
    "e.g. url: https://hooks.example.com/mistral",
    "path": "missing; a file sink needs the file to append events to, "
    "e.g. path: /var/log/poller/events.jsonl",
    "name": "missing; every entry here needs a name",
    "exchange": "missing; an amqp sink needs the exchange to publish to, e.g. exchange: poller",
    "stream": "missing; a redis sink needs the stream to append to, e.g. stream: poller:events",
}
_MISSING_BROKER_URL = {
    "nats": "nats://127.0.0.1:4222",
    "amqp": "amqp://guest:guest@127.0.0.1:5672/",
    "redis": "redis://127.0.0.1:6379/0",
    "mqtt": "mqtt://127.0.0.1:1883",
}
_PATTERN_HINTS = {
    WORKSPACE_NAME: "is not a valid workspace name; use lowercase letters, digits, _ and - "
    "(up to 63, starting with a letter or digit)",
    SINK_NAME: "is not a valid sink name; use letters, digits, _, . and -",
}
_EXPECTED = {
    "a mapping": ("model_type", "model_attributes_type", "dict_type", "mapping_type"),
    "a list": ("list_type", "tuple_type", "iterable_type", "sequence_type", "set_type"),
    "true or false": ("bool_type", "bool_parsing"),
    "a whole number": ("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
    "a number": ("float_type", "float_parsing", "finite_number"),
    "a string": ("string_type", "string_unicode", "string_sub_type"),
}
_SINK_TYPES = ", ".join(SINK_TYPES)


def kind_of(value: Any) -> str:
    """How a value looks, without showing it (it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


def _describe(
    error: Mapping[str, Any], data: Any, unknown: Mapping[str, str]
) -> tuple[Path, str, str]:
    """(key path, where on the line map, message) of one pydantic error."""
    kind: str = error["type"]
    path = _data_path(error["loc"], data, missing=kind == "missing")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    value = error.get("input")
    if kind == "poller":
        return (*path, *ctx["suffix"]), ctx["at"], ctx["message"]
    if kind == "extra_forbidden":
        key = str(error["loc"][-1])
        return path, "key", unknown.get(key, f"unknown key '{key}'")
    if kind == "missing":
        return path, "parent", _missing(path, data)
    if kind == "union_tag_invalid":
        message = f"unknown sink type '{ctx.get('tag')}'; use one of: {_SINK_TYPES}"
        return (*path, "type"), "value", message
    if kind == "union_tag_not_found":
        return (*path, "type"), "parent", f"missing; use one of: {_SINK_TYPES}"
    for expected, kinds in _EXPECTED.items():
        if kind in kinds:
            return path, "value", f"expected {expected}, got {kind_of(value)}"
    return path, "value", _constraint(kind, ctx, value)


def _missing(path: Path, data: Any) -> str:
    node = data
    for part in path[:-1]:
        node = node[part]
    kind = node.get("type") if isinstance(node, Mapping) else None
    if path[-1] == "url" and kind in _MISSING_BROKER_URL:
        example = _MISSING_BROKER_URL[kind]
        return f"missing; a {kind} sink needs the broker's URL, e.g. url: {example}"
    return _MISSING.get(str(path[-1]), "missing; this key is required")


def _constraint(kind: str, ctx: Mapping[str, Any], value: Any) -> str:
    if kind == "literal_error":
        options = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        shown = f"'{value}'" if isinstance(value, str) else kind_of(value)
        return f"unknown value {shown}; use one of: {options}"
    if kind == "string_pattern_mismatch":
        return f"'{value}' {_PATTERN_HINTS.get(ctx.get('pattern', ''), 'is not allowed here')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "greater_than_equal":
        return f"{value!r} is too small; use {ctx['ge']:g} or more"
    if kind == "greater_than":
        return f"{value!r} is too small; it must be more than {ctx['gt']:g}"
    if kind == "less_than_equal":
        return f"{value!r} is too large; use {ctx['le']:g} or less"
    if kind in ("value_error", "assertion_error"):
        return one_line(str(ctx.get("error", "invalid value")))
    return f"invalid value ({kind_of(value)})"


def _data_path(loc: Iterable[str | int], data: Any, *, missing: bool = False) -> Path:
    """Map a pydantic ``loc`` onto the data, dropping union tags and synthetic indexes."""
    parts = list(loc)
    path: list[str | int] = []
    node = data
    for i, part in enumerate(parts):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list | tuple) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        elif missing and i == len(parts) - 1 and isinstance(node, Mapping):
            pass  # a missing key
        else:
            continue
        path.append(part)
    return tuple(path)


def _is_echo(error: Mapping[str, Any]) -> bool:
    """A list too short only because some of its items failed: the items' errors say more."""
    value = error.get("input")
    minimum = (error.get("ctx") or {}).get("min_length", 0)
    return (
        error["type"] == "too_short" and isinstance(value, list | tuple) and len(value) >= minimum
    )


def translate(
    exc: ValidationError, data: Any, where: Where, unknown: Mapping[str, str] | None = None
) -> list[ConfigError]:
    """Every problem pydantic found, one ConfigError each, in file order.

    Values ``where`` already reported (a ``${VAR}`` that is not set) are left out;
    ``unknown`` gives the line of each unknown key (see ``models.file_context``).
    """
    found: dict[Path, tuple[float, int, str, str]] = {}
    echoes: dict[Path, tuple[float, int, str, str]] = {}
    for index, error in enumerate(exc.errors(include_url=False)):
        path, at, message = _describe(error, data, unknown or {})
        if where.is_broken(path) or path in found:
            continue
        if _is_echo(error):
            echoes.setdefault(path, (math.inf, index, at, message))
            continue
        line = where.line(path, at)
        found[path] = (math.inf if line is None else line, index, at, message)
    if not found and not where.problems:
        found = echoes  # nothing says more than the list's own complaint
    # a key reported along with something inside it: the inner problem is the one to fix
    kept = [
        path
        for path in found
        if not any(other[: len(path)] == path and other != path for other in found)
    ]
    kept.sort(key=lambda path: found[path][:2])
    return [where.error(path, found[path][3], found[path][2]) for path in kept]
