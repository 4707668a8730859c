"""Snapshot rows a full listing stages while it pages, so that no write waits on the API.

A listing of 100,000 items takes a thousand requests; holding the store's write
transaction open across them would block every other writer (delivery bookkeeping, the
proxy, on SQLite the whole database) for as long. The listing instead stages the rows it
will write — in memory while they are few, in an anonymous temporary file past that, so
memory stays flat — and the poll's one transaction only applies them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Iterator
from types import TracebackType

from poller.model import Resource

SPOOL_BYTES = 4 * 1024 * 1024
"""Staged rows kept in memory before they move to a temporary file."""
CHUNK_ROWS = 1000
"""Rows handed back at a time when the transaction applies them."""


class Staging:
    """Resources appended while a listing pages, read back in chunks; a context manager.

    The file is anonymous (deleted as soon as it is closed, by the process or by a crash)
    and private to the process.
    """

    def __init__(self, *, spool_bytes: int = SPOOL_BYTES, chunk_rows: int = CHUNK_ROWS) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=spool_bytes, mode="w+b")
        self.chunk_rows = chunk_rows
        self.count = 0

    def __enter__(self) -> Staging:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    def add(self, resources: Iterable[Resource]) -> None:
        """Stage rows to write."""
        lines = [
            json.dumps([r.id, r.status, r.created, dict(r.data)], separators=(",", ":")).encode()
            + b"\n"
            for r in resources
        ]
        self._file.seek(0, 2)
        self._file.writelines(lines)
        self.count += len(lines)

    def chunks(self) -> Iterator[list[Resource]]:
        """The staged rows, in the order they were staged, ``chunk_rows`` at a time."""
        self._file.seek(0)
        chunk: list[Resource] = []
        for line in self._file:
            rid, status, created, data = json.loads(line)
            chunk.append(Resource(id=rid, status=status, created=created, data=data))
            if len(chunk) >= self.chunk_rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
