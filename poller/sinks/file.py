"""The ``file`` sink: appends one JSON line per event, on disk before it counts as delivered."""

from __future__ import annotations

import asyncio
import os
import pathlib

from poller.model import Event, Outcome
from poller.sinks.base import dumps


class FileSink:
    """Appends each event's envelope to ``path``, flushed and fsync'ed.

    Deliveries that arrive while a write is on its way share the next write and its one
    fsync (group commit): each counts as done only once its line is on disk. The file is
    reopened when it was moved or removed (log rotation).
    """

    def __init__(self, name: str, path: str | os.PathLike[str]) -> None:
        self.name = name
        self.path = pathlib.Path(path)
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._queue: list[tuple[bytes, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def _open(self) -> int:
        try:
            st = os.stat(self.path)
            current: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self._fd is not None and current == self._inode:
            return self._fd
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        st = os.fstat(fd)
        self._fd, self._inode = fd, (st.st_dev, st.st_ino)
        if current is None:
            # a new file's name is durable only once its directory is: without this, a
            # crash could take back lines already counted as delivered
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        return fd

    def _append(self, lines: list[bytes]) -> None:
        fd = self._open()
        view = memoryview(b"".join(lines))
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)

    async def _write_queued(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await asyncio.to_thread(self._append, [line for line, _ in batch])
            except OSError as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)

    async def deliver(self, event: Event) -> Outcome:
        line = dumps(event.envelope()) + b"\n"
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((line, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_queued(), name=f"file-{self.name}")
        try:
            await asyncio.shield(done)
        except OSError as exc:
            return Outcome(ok=False, error=f"cannot append to {self.path}: {exc.strerror}")
        return Outcome(ok=True)

    async def aclose(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
