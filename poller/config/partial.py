"""The config of a command that reads only part of it: the operator commands.

``poller status``, ``events …``, ``sinks …`` and ``db …`` read the store, the names of the
workspaces and sinks and the sources polled (``sinks test NAME`` also reads that sink), not
the API keys, webhook secrets or the proxy. A ``${VAR}`` that is not set in a part such a
command does not read takes that part out of its config instead of stopping it:

- in a sink: the sink is kept by its name alone;
- in ``proxy``: the whole section;
- anywhere else: the key that holds it (a workspace's ``api_key``, ``ops.listen``, …).

What was left out is reported once, so the command can say so in one warning line. The
daemon's commands (``run``, ``once``, ``check-config``) read everything and stay strict.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from poller.config.reader import Path, Where, dotted

Reads = Callable[[Path, Mapping[str, Any]], bool]
"""Whether a command reads the value at a path of the file's data."""


@dataclass(frozen=True)
class Skipped:
    """What a command left out of its config: the variables not set, and the parts."""

    variables: tuple[str, ...]
    parts: tuple[str, ...]


def operator(sink: str | None = None) -> Reads:
    """What an operator command reads: the store, workspace and sink names, the sources;
    with ``sink``, all of the sink of that name too."""

    def reads(path: Path, data: Mapping[str, Any]) -> bool:
        if path[:1] == ("store",) or path[-1:] == ("name",) or "sources" in path:
            return True
        if sink is None or path[:1] != ("sinks",) or len(path) < 2:
            return False
        entry = _at(data, path[:2])
        return isinstance(entry, Mapping) and entry.get("name") == sink

    return reads


def skip(data: Any, where: Where, reads: Reads) -> tuple[Any, Skipped | None]:
    """``data`` without the parts whose unset variables the command does not read.

    Their problems are dropped from ``where``; those in parts it reads stay, to be reported.
    """
    if not isinstance(data, Mapping):
        return data, None
    unread = [(path, name) for path, name, _ in where.unset if not reads(path, data)]
    if not unread:
        return data, None
    out = copy.deepcopy(dict(data))
    parts: list[str] = []
    for path, _ in unread:
        where.forgive(path)
        part = _take_out(out, path)
        if part not in parts:
            parts.append(part)
    variables = tuple(dict.fromkeys(name for _, name in unread))
    return out, Skipped(variables, tuple(parts))


def _take_out(data: dict[str, Any], path: Path) -> str:
    """Take the part holding ``path`` out of ``data``; say which part it was."""
    section = path[0]
    if section == "sinks" and len(path) >= 2:
        entry = _at(data, path[:2])
        if not isinstance(entry, Mapping):
            return dotted(path[:2])
        name = entry.get("name")
        data["sinks"][path[1]] = {"name": name, "type": "log"}
        return f"sink '{name}'"
    if section == "proxy":
        data.pop("proxy", None)
        return "proxy"
    key = path[:3] if section == "workspaces" else path[:2]
    parent = _at(data, key[:-1])
    if isinstance(parent, dict):
        parent.pop(str(key[-1]), None)
    return dotted(key)


def _at(data: Any, path: Path) -> Any:
    node = data
    for part in path:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            return None
    return node
