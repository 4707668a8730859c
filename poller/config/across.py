"""Checks across sections: names given twice, names that refer to nothing, settings that
need another section's value.

They read the file as written (plain data, ``${VAR}`` expanded), not the validated models,
so that they run whether or not the values themselves are valid: one ``check-config``
reports both kinds of problem. A key whose own value is already reported, or a part too
malformed to judge, is left to that report rather than judged twice.
"""

from __future__ import annotations

import importlib
from collections.abc import Collection, Mapping
from typing import Any

from pydantic import ValidationError

from poller.config.fields import is_loopback, split_listen
from poller.config.models import SINK_EXTRAS, ProxySection, file_context
from poller.config.reader import Path, Where, dotted


class _Notes:
    """Notes problems in ``where``, except at keys already reported."""

    def __init__(self, where: Where, taken: Collection[str]) -> None:
        self.where = where
        self.taken = taken
        self.broken = set(where.broken)  # before these checks: two of them may share a key

    def clear(self, path: Path) -> bool:
        """Whether ``path`` holds a value no other problem was reported at."""
        if dotted(path) in self.taken:
            return False
        return not any(path[: len(b)] == b for b in self.broken)

    def note(self, path: Path, message: str, at: str = "value") -> None:
        if self.clear(path):
            self.where.note(path, message, at)


def check(data: Mapping[str, Any], where: Where, store_url: str, taken: Collection[str]) -> None:
    """Note in ``where`` every problem across the sections of ``data``, the file as written.

    ``store_url`` is the effective store; ``taken`` the dotted keys whose values were already
    reported (their names or types are not judged again).
    """
    notes = _Notes(where, taken)
    names = _workspaces(data, notes)
    _sinks(data.get("sinks"), names, notes)
    _proxy(data, names, notes)
    if data.get("ha") is not None and not store_url.startswith("postgresql"):
        notes.note(
            ("ha",),
            "HA needs a PostgreSQL store shared by the replicas; set store.url to "
            "postgresql+psycopg://… "
            "or remove the ha: section (a SQLite store runs one daemon)",
            at="key",
        )


def _workspaces(data: Mapping[str, Any], notes: _Notes) -> dict[str, Path] | None:
    """Each workspace name and where it is given; None when some name cannot be told."""
    listed = data.get("workspaces")
    if data.get("mistral") is not None and listed is not None:
        notes.note(
            ("workspaces",),
            "give either mistral: (one workspace) or workspaces: (a list), not both",
            at="key",
        )
    if listed is None:
        mistral = data.get("mistral")
        named = mistral.get("name", "default") if isinstance(mistral, Mapping) else "default"
        path: Path = ("mistral", "name")
        return {named: path} if isinstance(named, str) and notes.clear(path) else None
    if not isinstance(listed, list):
        return None
    seen: dict[str, Path] = {}
    complete = True
    for i, entry in enumerate(listed):
        path = ("workspaces", i, "name")
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str) or not notes.clear(path):
            complete = False
            continue
        if name in seen:
            notes.note(
                path,
                f"duplicate workspace name '{name}' (also {dotted(seen[name][:-1])}); "
                "give each workspace its own name",
            )
            continue
        seen[name] = path
    return seen if complete else None


def _sinks(sinks: Any, workspaces: dict[str, Path] | None, notes: _Notes) -> None:
    if not isinstance(sinks, list):
        return
    seen: dict[str, int] = {}
    for i, sink in enumerate(sinks):
        if not isinstance(sink, Mapping):
            continue
        name, kind = sink.get("name"), sink.get("type")
        if isinstance(name, str) and notes.clear(("sinks", i, "name")):
            if name in seen:
                notes.note(
                    ("sinks", i, "name"),
                    f"duplicate sink name '{name}' (also sinks[{seen[name]}]); "
                    "give each sink its own name",
                )
            seen.setdefault(name, i)
        if isinstance(kind, str) and kind in SINK_EXTRAS and not _importable(SINK_EXTRAS[kind]):
            notes.note(
                ("sinks", i, "type"),
                f"{kind} needs the {kind} extra: pip install 'poller[{kind}]'",
            )
        wanted = sink.get("workspaces")
        if workspaces is None or not isinstance(wanted, list):
            continue
        for j, workspace in enumerate(wanted):
            if isinstance(workspace, str) and workspace not in workspaces:
                notes.note(
                    ("sinks", i, "workspaces", j),
                    f"unknown workspace '{workspace}'; known: {', '.join(workspaces)}",
                )


def _importable(module: str) -> bool:
    """Whether ``module`` (a broker sink's client library) can be imported here."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _proxy(data: Mapping[str, Any], workspaces: dict[str, Path] | None, notes: _Notes) -> None:
    written = data.get("proxy")
    if not isinstance(written, Mapping):
        return
    try:
        raw = ProxySection.model_validate(written, context=file_context())
    except ValidationError:
        return  # its values are reported; how they fit together is judged once they are valid
    if raw.token is not None and not raw.inject_key:
        notes.note(
            ("proxy", "token"),
            "a token is only used with inject_key: true (clients then send it instead of an "
            "API key); remove it or set inject_key: true",
        )
    if raw.inject_key and raw.token is None:
        notes.note(
            ("proxy", "inject_key"),
            "inject_key: true needs a token that local clients must send; "
            "set proxy.token, e.g. token: ${POLLER_PROXY_TOKEN}",
        )
    if raw.inject_key and not is_loopback(split_listen(raw.listen)[0]):
        notes.note(
            ("proxy", "listen"),
            f"'{raw.listen}' is not a loopback address; with inject_key: true the proxy must "
            "listen on 127.0.0.1, ::1 or localhost",
        )
    if workspaces is None:
        return
    names = list(workspaces)
    if raw.workspace is not None and raw.workspace not in workspaces:
        notes.note(
            ("proxy", "workspace"),
            f"unknown workspace '{raw.workspace}'; known: {', '.join(names)}",
        )
        return
    upstream = raw.workspace or names[0]
    if raw.inject_key and not _api_key(data, workspaces[upstream]):
        notes.note(
            ("proxy", "inject_key"),
            f"workspace '{upstream}' has no api_key to inject; set its api_key, "
            "or let clients send their own key (inject_key: false)",
        )


def _api_key(data: Mapping[str, Any], name_path: Path) -> bool:
    """Whether the workspace whose name is at ``name_path`` has an API key written."""
    node: Any = data
    for part in name_path[:-1]:
        node = node.get(part) if isinstance(node, Mapping) else node[part]
    return isinstance(node, Mapping) and bool(node.get("api_key"))
