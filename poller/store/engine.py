"""Opening the database: URL checks, SQLite pragmas and file mode, schema and its version."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlmodel import Session, SQLModel, select

from poller.exceptions import SchemaVersionError, StoreError
from poller.store import tables

SUPPORTED = ("sqlite", "postgresql")


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable store URL>"


def _sqlite_file(url: sa.URL) -> pathlib.Path:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise StoreError(
            f"store.url: {safe_url(str(url))} is not a file; "
            "use sqlite:///PATH (a daemon needs a file)"
        )
    return pathlib.Path(database)


def _prepare_sqlite_file(path: pathlib.Path) -> None:
    """Create the database file readable by its owner only, before SQLite opens it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StoreError(
            f"store.url: cannot create {path}: {exc.strerror}; set store.url to a writable path"
        ) from exc


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def create_engine(url: str, *, create: bool = True) -> sa.Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL), with the schema created and checked.

    With ``create=False`` (operator commands) a SQLite file that does not exist yet is an
    error rather than a new file: the daemon creates its store, owned by its own user.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StoreError(f"store.url: cannot parse {safe_url(url)!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        path = _sqlite_file(parsed)
        if create:
            _prepare_sqlite_file(path)
        elif not path.exists():
            raise StoreError(
                f"store.url: there is no store at {path} yet; start the daemon first "
                "(or point --config at the daemon's config)"
            )
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 60})
        sa.event.listen(engine, "connect", _on_sqlite_connect)
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        engine = sa.create_engine(parsed, pool_pre_ping=True)
    else:
        raise StoreError(
            f"store.url: unsupported store URL {safe_url(url)!r}; "
            "use sqlite:///PATH or postgresql://USER@HOST/DB"
        )
    try:
        init_schema(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "cannot connect"
        raise StoreError(f"store.url: cannot open {safe_url(url)}: {reason}") from exc
    except BaseException:
        engine.dispose()
        raise
    return engine


def init_schema(engine: sa.Engine) -> None:
    """Create missing tables and record (or check) the schema version."""
    SQLModel.metadata.create_all(engine, tables=[_table(t) for t in _TABLES])
    with Session(engine) as session:
        row = session.exec(
            select(tables.MetaRow).where(tables.MetaRow.key == "schema_version")
        ).first()
        if row is None:
            session.add(tables.MetaRow(key="schema_version", value=str(tables.SCHEMA_VERSION)))
            session.commit()
        elif int(row.value) > tables.SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the store has schema version {row.value}, newer than this poller's "
                f"{tables.SCHEMA_VERSION}; upgrade poller or point store.url at another database"
            )


def _table(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


_TABLES: tuple[type[SQLModel], ...] = (
    tables.MetaRow,
    tables.ResourceRow,
    tables.SourceStateRow,
    tables.EventRow,
    tables.DeliveryRow,
    tables.AttemptRow,
    tables.SinkStateRow,
    tables.LeaseRow,
    tables.ReplicaRow,
)
