"""Opening the database: URL checks, SQLite pragmas and file mode, then its schema."""

from __future__ import annotations

import contextlib
import os
import pathlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
import tenacity
from sqlalchemy.engine import make_url

from poller.exceptions import StoreError
from poller.store import migrate

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
    """Create the database file readable by its owner only, before SQLite opens it.

    Its directory must exist: creating it would hide a mistyped path, and the directory's
    owner and mode are the installer's choice (systemd's StateDirectory=, a volume).
    """
    directory = path.parent
    if not directory.is_dir():
        raise StoreError(
            f"store.url: the directory {directory} does not exist; create it "
            f"(install -d -m 0700 {directory}) or change store.url"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
    except OSError as exc:
        raise StoreError(
            f"store.url: cannot create {path}: {exc.strerror}; set store.url to a writable path"
        ) from exc


def _locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


# Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is
# locked" at once, without its busy handler, to one of two connections that both hold a
# shared lock and want it: several processes opening one new store at once meet that.
@tenacity.retry(
    retry=tenacity.retry_if_exception(_locked),
    wait=tenacity.wait_random(0.01, 0.2),
    stop=tenacity.stop_after_delay(60),
    reraise=True,
)
def _enable_wal(cursor: Any) -> None:
    cursor.execute("PRAGMA journal_mode=WAL")


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=60000")
    _enable_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def open_engine(url: str, *, create: bool = True) -> sa.Engine:
    """An engine for ``url`` (SQLite file or PostgreSQL), its schema neither made nor checked.

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
    return engine


def create_engine(url: str, *, create: bool = True) -> sa.Engine:
    """An engine for ``url`` with its schema at this poller's revision.

    The daemon (``create=True``) creates or upgrades the schema, under a lock; operator
    commands (``create=False``) only check it, and never create a store.
    """
    engine = open_engine(url, create=create)
    with opening(engine, url):
        if create:
            migrate.upgrade(engine)
        else:
            migrate.check(engine, where=safe_url(url))
    return engine


@contextlib.contextmanager
def opening(engine: sa.Engine, url: str) -> Iterator[None]:
    """Turn a failure to reach the database into one line naming it; dispose on any error."""
    try:
        yield
    except sa.exc.OperationalError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "cannot connect"
        raise StoreError(f"store.url: cannot open {safe_url(url)}: {reason}") from exc
    except BaseException:
        engine.dispose()
        raise
