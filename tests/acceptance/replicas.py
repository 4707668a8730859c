"""Replicas of `poller run` on one PostgreSQL schema, each a process with its own log.

Lease times are short (a 2 s TTL) and every wait is on a condition: the database's leases,
the replicas' logs, what their endpoints answer.
"""

from __future__ import annotations

import base64
import json
import pathlib
import signal
import subprocess
from typing import Any

import sqlalchemy as sa

from poller.config import SOURCE_NAMES
from poller.store import Lease, all_leases
from poller.testing import baselined_sources, leader_pid

from .conftest import spawn, wait_until

SECRET = "whsec_" + base64.b64encode(b"replicas-secret-of-32-bytes!!!!!").decode()
TTL = 2.0


def config_text(
    api: str,
    store_url: str,
    hook: str | None,
    *,
    level: str = "info",
    interval: str = "300ms",
    key: str | None = None,
    extra: str = "",
) -> str:
    """The replicas' shared config: sources polled every ``interval`` (200ms while jobs
    move), ``key`` the API key; ``extra`` adds top-level YAML (``${VAR}``s allowed)."""
    api_key = f"  api_key: {key}\n" if key else ""
    sinks = "  - name: console\n    type: file\n    path: /dev/null\n"
    if hook:
        sinks = (
            f"  - name: hook\n    type: http\n    url: {hook}\n    secret: {SECRET}\n"
            "    retry:\n      probe_interval: 200ms\n"
        )
    return (
        f"mistral:\n  base_url: {api}\n{api_key}store:\n  url: '{store_url}'\n"
        f"ha:\n  lease_ttl: {TTL}s\n"
        f"poll:\n  interval: {interval}\n  active_interval: 200ms\n"
        f"sinks:\n{sinks}log:\n  level: {level}\n  format: json\n{extra}"
    )


class Replicas:
    """`poller run` processes on one config, each with its own log."""

    def __init__(self, config: pathlib.Path, logs: pathlib.Path, store_url: str) -> None:
        self.config = config
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.engine = sa.create_engine(store_url)

    def start(self, count: int) -> None:
        """Start ``count`` replicas: one first, the others once it has made the schema."""
        for _ in range(count):
            self.add()

    def add(self, **env: str) -> subprocess.Popen[bytes]:
        """Start one more replica (``env``: variables its config names); the first one is
        waited for until it leads, so that the others find the schema made."""
        log = self.logs / f"replica-{len(self.procs)}.log"
        proc = spawn(["run", "--config", str(self.config)], log, **env)
        self.procs.append(proc)
        if len(self.procs) == 1:
            wait_until(lambda: self.lease() is not None, limit=30)
        return proc

    def lease(self) -> Lease | None:
        try:
            leases = all_leases(self.engine)
        except sa.exc.ProgrammingError:  # no table before the first replica made it
            return None
        return leases[0] if leases and leases[0].holder else None

    def leader(self) -> subprocess.Popen[bytes]:
        pid = leader_pid(self.engine)
        return next(p for p in self.procs if p.pid == pid)

    def live(self) -> int:
        """How many replicas have a live heartbeat."""
        query = sa.text("select count(*) from replicas where expires_at > clock_timestamp()")
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def log_of(self, proc: subprocess.Popen[bytes]) -> pathlib.Path:
        return self.logs / f"replica-{self.procs.index(proc)}.log"

    def lines(self, proc: subprocess.Popen[bytes], after: int = 0) -> list[dict[str, Any]]:
        text = self.log_of(proc).read_text()[after:]
        return [json.loads(x) for x in text.splitlines() if x.startswith("{")]

    def mark(self, proc: subprocess.Popen[bytes]) -> int:
        """Where ``proc``'s log ends now (for ``lines(proc, after=...)``)."""
        return len(self.log_of(proc).read_text())

    def baselined(self) -> bool:
        """Every source of the workspace took its baseline."""
        return baselined_sources(self.engine) == len(SOURCE_NAMES)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.engine.dispose()
