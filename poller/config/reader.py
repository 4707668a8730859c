"""Reading the YAML file into plain data: line numbers of every key, ``${VAR}`` expansion.

:class:`Where` remembers on which line each key and value of the document sits, so that
any later problem can be reported as ``<file>:<line>: <key>: <what to change>``. Problems
that do not stop the reading (a ``${VAR}`` that is not set, a duplicate key) are noted in
it and reading goes on, so that every one of them is reported at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from poller.exceptions import ConfigError

EXAMPLE_PATH = "config/poller.example.yaml"

Path = tuple[str | int, ...]


def dotted(path: Path) -> str:
    """``path`` as a user would write it, e.g. ``sinks[0].url``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Where:
    """Where the parts of one document are: key path -> 1-based line."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.keys: dict[Path, int] = {}
        self.values: dict[Path, int] = {}
        self.problems: list[ConfigError] = []
        """Problems found so far, reported together once the whole file has been read."""
        self.broken: set[Path] = set()
        """Values left as written because of a noted problem: their checks would only echo it."""
        self.unset: list[tuple[Path, str, ConfigError]] = []
        """Each ``${VAR}`` left unexpanded because VAR is not set: (where, VAR, its problem)."""

    def note(self, path: Path, message: str, at: str = "value") -> None:
        """Record a problem at ``path`` and go on reading."""
        self.problems.append(self.error(path, message, at))
        self.broken.add(path)

    def note_unset(self, path: Path, name: str) -> None:
        """Record that ``${name}`` at ``path`` is not set (a problem, unless forgiven)."""
        self.note(
            path,
            f"environment variable {name} is not set; export it or write the value in the file",
        )
        self.unset.append((path, name, self.problems[-1]))

    def forgive(self, path: Path) -> None:
        """Drop the unset variables noted at ``path``: a reader that does not need it."""
        dropped = [problem for at, _, problem in self.unset if at == path]
        self.problems = [p for p in self.problems if all(p is not d for d in dropped)]
        self.unset = [entry for entry in self.unset if entry[0] != path]
        self.broken.discard(path)

    def is_broken(self, path: Path) -> bool:
        """Whether ``path`` lies in a value already reported as a problem."""
        return any(path[: len(b)] == b for b in self.broken)

    def line(self, path: Path, at: str = "value") -> int | None:
        if at == "key" and path in self.keys:
            return self.keys[path]
        if at == "parent":
            path = path[:-1]
        while path not in self.values:
            if not path:
                return None
            path = path[:-1]
        return self.values[path]

    def error(self, path: Path, message: str, at: str = "value") -> ConfigError:
        return ConfigError(
            message, key=dotted(path) or None, path=self.source, line=self.line(path, at)
        )


def one_line(text: str) -> str:
    """``text`` with each run of whitespace, newlines included, as one space."""
    return " ".join(text.split())


def read_yaml(text: str, where: Where, environ: Mapping[str, str]) -> Any:
    """The plain data of YAML ``text``, its lines noted in ``where``, ``${VAR}`` expanded."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is None or root.tag == "tag:yaml.org,2002:null":
            raise ConfigError(f"the file is empty; see {EXAMPLE_PATH}", path=where.source)
        return _Reader(where, environ).convert(root, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = ", ".join(one_line(part) for part in (exc.context, exc.problem) if part)
        line = text.splitlines()[mark.line] if mark and mark.line < len(text.splitlines()) else ""
        if "${" in line:
            what += "; quote values that hold ${...} inside [...] or {...}"
        raise ConfigError(
            f"invalid YAML: {what}", path=where.source, line=mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {one_line(str(exc))}", path=where.source) from None


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Reader:
    """Turns a composed YAML node tree into plain data, noting lines and expanding ``${VAR}``."""

    def __init__(self, where: Where, environ: Mapping[str, str]) -> None:
        self.where = where
        self.environ = environ
        self.loader = yaml.SafeLoader("")
        self.active: set[int] = set()

    def convert(self, node: yaml.Node, path: Path) -> Any:
        self.where.values.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node)
            return self._expand(value, path) if isinstance(value, str) else value
        if id(node) in self.active:
            raise self.where.error(path, "this alias refers to itself; anchors must not recurse")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode)
            return self._mapping(node, path)
        finally:
            self.active.discard(id(node))

    def _key(self, node: yaml.Node, path: Path) -> str:
        key = self.loader.construct_object(node)
        if not isinstance(key, str):
            raise ConfigError(
                f"the key {key!r} is not a string; quote it",
                key=dotted(path) or None,
                path=self.where.source,
                line=node.start_mark.line + 1,
            )
        return key

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self._key(key_node, path)
            if key in seen:
                self.where.keys[(*path, key)] = key_node.start_mark.line + 1
                self.where.note((*path, key), f"duplicate key '{key}'; give each key once", "key")
            seen.add(key)
        # Merged keys (<<: *anchor) come first so the mapping's own keys override them.
        self.loader.flatten_mapping(node)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            self.where.keys[(*path, key)] = key_node.start_mark.line + 1
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _expand(self, text: str, path: Path) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            body = match.group(1)
            if body is None:
                self.where.note(
                    path, "unterminated ${; close it with } or write $${ for a literal ${"
                )
                return match.group(0)
            ref = _REFERENCE.match(body)
            if ref is None:
                self.where.note(
                    path,
                    f"'${{{body}}}' is not a valid reference; use ${{NAME}} or ${{NAME:-default}}",
                )
                return match.group(0)
            name, default = ref.group(1), ref.group(2)
            value = self.environ.get(name)
            if value is None or (value == "" and default is not None):
                if default is None:
                    self.where.note_unset(path, name)
                    return match.group(0)
                return default
            return value

        return _INTERPOLATION.sub(replace, text) if "${" in text else text


_INTERPOLATION = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?$", re.DOTALL)
