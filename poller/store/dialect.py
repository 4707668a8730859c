"""Statements that differ by dialect, written once for SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

_CHUNK = 500


def like_glob(column: sa.ColumnElement[str], glob: str) -> sa.ColumnElement[bool]:
    """``column`` matches ``glob``, where ``*`` matches anything (``batch_job.*``)."""
    pattern = glob.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.like(pattern.replace("*", "%"), escape="\\")


def chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    update: Sequence[str] | None = None,
) -> None:
    """INSERT … ON CONFLICT DO UPDATE (of ``update``, default every other column given).

    The same statement on SQLite and PostgreSQL.
    """
    if not rows:
        return
    insert: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    columns = list(update) if update is not None else [c for c in rows[0] if c not in keys]
    for part in chunks(rows):
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(keys), set_={c: stmt.excluded[c] for c in columns}
        )
        conn.execute(stmt, list(part))
