"""One ``poller run`` per SQLite store: an exclusive ``flock`` on ``<db>.lock``.

A SQLite store lives on one host and is polled by one daemon; a second daemon on the same
file would poll every workspace twice. The lock is the kernel's: it goes with the process,
so a daemon killed with SIGKILL frees it, and nothing stale is left to clean up. The file
holds who took it (replica id and pid), for the second daemon's one-line refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator

import sqlalchemy as sa

from poller.exceptions import StoreInUseError


def path_for(url: str) -> pathlib.Path | None:
    """The lock file of a SQLite store URL; ``None`` for other stores."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return pathlib.Path(f"{parsed.database}.lock")


@contextlib.contextmanager
def exclusive(path: pathlib.Path, owner: str) -> Iterator[None]:
    """Hold the lock at ``path`` meanwhile, or raise ``StoreInUseError`` naming its holder."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            raise StoreInUseError(
                f"{path.with_suffix('')} is already used by a running `poller run` "
                f"({holder}); stop it first, or give this daemon its own store.url "
                "(replicas need a PostgreSQL store)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"replica {owner}, pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
