"""Reading the deploy files as their tools would: a Dockerfile's instructions and the rules a
linter such as hadolint applies to them, a .dockerignore's patterns, the ``${VAR}``s a config
refers to. Docker cannot run here, so what it would refuse or regret is checked in Python."""

from __future__ import annotations

import json
import pathlib
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass

VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def required_variables(text: str) -> set[str]:
    """The ``${VAR}`` a config needs set: those written without a ``:-default``."""
    return {m.group(1) for m in VARIABLE.finditer(text) if m.group(2) is None}


@dataclass(frozen=True)
class Instruction:
    """One instruction of a Dockerfile, its continuation lines joined."""

    op: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, else None (shell form)."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        return None

    def words(self) -> list[str]:
        return shlex.split(self.args)


def instructions(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile, comments dropped, continuations joined."""
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment between continuation lines is dropped by Docker too
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(part for part in pending if part)
        pending = []
        op, _, args = joined.partition(" ")
        out.append(Instruction(op.upper(), args.strip(), start))
    return out


def user_ids(instruction: Instruction) -> tuple[int, int] | None:
    """(UID, GID) of a ``USER UID:GID`` instruction; None when either is a name."""
    user, _, group = instruction.args.partition(":")
    if not user.isdigit() or not (group or user).isdigit():
        return None
    return int(user), int(group or user)


class DockerIgnore:
    """The patterns of a .dockerignore, matched the way the Docker builder matches them:
    the last pattern that matches a path or one of its parents decides, ``!`` keeps."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[re.Pattern[str], bool]] = []
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = line.lstrip("!").strip().strip("/")
            self.rules.append((re.compile(_glob_regex(pattern)), keep))

    def excluded(self, path: str) -> bool:
        """Whether ``path`` (relative to the context, ``/``-separated) stays out of it."""
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for regex, keep in self.rules:
            if any(regex.fullmatch(prefix) for prefix in prefixes):
                excluded = not keep
        return excluded


def _glob_regex(pattern: str) -> str:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return out


@dataclass(frozen=True)
class Context:
    """A build context: its root, its .dockerignore, and the files a build would send
    (``files``: paths relative to the root, e.g. what ``git ls-files`` lists)."""

    root: pathlib.Path
    ignore: DockerIgnore
    files: frozenset[str]


Rule = Callable[[list[Instruction], Context], Iterable[str]]


def _base_image_pinned(steps: list[Instruction], _context: Context) -> Iterable[str]:
    for step in steps:
        if step.op != "FROM":
            continue
        image = next(w for w in step.words() if not w.startswith("--"))
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if not tag:
            yield f"line {step.line}: FROM {image}: give the base image an explicit version tag"
        elif tag == "latest" or not tag[0].isdigit():
            yield (
                f"line {step.line}: FROM {image}: pin a version tag "
                f"(e.g. {name}:3.11-slim), not '{tag}'"
            )


def _user_numeric(steps: list[Instruction], _context: Context) -> Iterable[str]:
    users = [step for step in steps if step.op == "USER"]
    if not users:
        yield "no USER: the image would run as root"
    for step in users:
        ids = user_ids(step)
        if ids is None:
            yield (
                f"line {step.line}: USER {step.args}: use a numeric UID:GID, so that "
                "Kubernetes' runAsNonRoot can check it"
            )
        elif 0 in ids:
            yield f"line {step.line}: USER {step.args}: the image must not run as root"


def _no_add(steps: list[Instruction], _context: Context) -> Iterable[str]:
    for step in steps:
        if step.op == "ADD":
            yield f"line {step.line}: ADD {step.args}: use COPY for files and directories"


def _exec_form(steps: list[Instruction], _context: Context) -> Iterable[str]:
    for step in steps:
        args = step.args
        if step.op == "HEALTHCHECK":
            if args.strip().upper() == "NONE":
                continue
            args = args.split("CMD", 1)[1].strip() if "CMD" in args else ""
        if step.op in ("ENTRYPOINT", "CMD", "HEALTHCHECK") and (
            Instruction(step.op, args, step.line).exec_form() is None
        ):
            yield (
                f"line {step.line}: {step.op} is in shell form; write it as a JSON array, so "
                "that the process gets signals (docker stop) directly"
            )


def _copy_sources_in_context(steps: list[Instruction], context: Context) -> Iterable[str]:
    for step in steps:
        if step.op != "COPY":
            continue
        words = step.words()
        if any(w.startswith("--from") for w in words):
            continue
        *sources, _target = [w for w in words if not w.startswith("--")]
        for source in sources:
            source = source.strip("/")
            inside = [f for f in context.files if f == source or f.startswith(source + "/")]
            if not inside:
                yield f"line {step.line}: COPY {source}: no such file in the build context"
                continue
            dropped = sorted(f for f in inside if context.ignore.excluded(f))
            if dropped:
                yield (
                    f"line {step.line}: COPY {source}: .dockerignore leaves out "
                    f"{', '.join(dropped[:3])}"
                )


def _apt_cleaned(steps: list[Instruction], _context: Context) -> Iterable[str]:
    for step in steps:
        if step.op != "RUN" or not re.search(r"\bapt(-get)? install\b", step.args):
            continue
        if "--no-install-recommends" not in step.args:
            yield f"line {step.line}: apt-get install without --no-install-recommends"
        if "rm -rf /var/lib/apt/lists/*" not in step.args:
            yield (
                f"line {step.line}: apt-get install without rm -rf /var/lib/apt/lists/* "
                "in the same RUN"
            )


def _pip_no_cache(steps: list[Instruction], _context: Context) -> Iterable[str]:
    cache_off = False
    for step in steps:
        if step.op == "ENV" and re.search(r"\bPIP_NO_CACHE_DIR=(1|true|on|yes)\b", step.args):
            cache_off = True
        if step.op == "RUN" and re.search(r"\bpip3? install\b", step.args):
            if not cache_off and "--no-cache-dir" not in step.args:
                yield (
                    f"line {step.line}: pip install keeps its cache in the image; add "
                    "--no-cache-dir or ENV PIP_NO_CACHE_DIR=1"
                )


def _workdir_absolute(steps: list[Instruction], _context: Context) -> Iterable[str]:
    for step in steps:
        if step.op == "WORKDIR" and not step.args.startswith("/"):
            yield f"line {step.line}: WORKDIR {step.args}: use an absolute path"
        if step.op == "RUN" and re.search(r"(^|&&|;)\s*cd\s", step.args):
            yield f"line {step.line}: RUN cd …: use WORKDIR to change directory"


RULES: tuple[Rule, ...] = (
    _base_image_pinned,
    _user_numeric,
    _no_add,
    _exec_form,
    _copy_sources_in_context,
    _apt_cleaned,
    _pip_no_cache,
    _workdir_absolute,
)


def lint(text: str, context: Context) -> list[str]:
    """What a Dockerfile linter would say about ``text``, one line per problem."""
    steps = instructions(text)
    return [problem for rule in RULES for problem in rule(steps, context)]


@dataclass(frozen=True)
class Image:
    """What a Dockerfile's final stage promises its users: who runs, what, and where."""

    user: tuple[int, int] | None
    command: list[str]
    health: list[str]
    env: dict[str, str]
    exposed: list[int]
    volumes: list[str]
    copied: dict[str, str]
    """COPY target -> source, for single-source copies."""

    @classmethod
    def read(cls, text: str) -> Image:
        steps = instructions(text)

        def last(op: str) -> Instruction | None:
            found = [s for s in steps if s.op == op]
            return found[-1] if found else None

        user = last("USER")
        entry, cmd, health = last("ENTRYPOINT"), last("CMD"), last("HEALTHCHECK")
        env: dict[str, str] = {}
        for step in steps:
            if step.op == "ENV":
                for word in step.words():
                    name, equals, value = word.partition("=")
                    if equals:
                        env[name] = value
        copied: dict[str, str] = {}
        for step in steps:
            words = [w for w in step.words() if not w.startswith("--")] if step.op == "COPY" else []
            if len(words) == 2:
                copied[words[1]] = words[0]
        return cls(
            user=user_ids(user) if user else None,
            command=[*_exec(entry), *_exec(cmd)],
            health=json.loads(health.args.split("CMD", 1)[1]) if health else [],
            env=env,
            exposed=[int(p.split("/")[0]) for s in steps if s.op == "EXPOSE" for p in s.words()],
            volumes=[v for s in steps if s.op == "VOLUME" for v in (s.exec_form() or s.words())],
            copied=copied,
        )

    def config_path(self) -> str:
        """The config file the image's command reads."""
        return self.command[self.command.index("--config") + 1]


def _exec(step: Instruction | None) -> list[str]:
    return (step.exec_form() or []) if step else []
