"""The store's schema, kept by Alembic: upgraded at start under a lock, checked by commands.

Revisions live in ``poller/store/migrations/versions``. Replicas that start together never
migrate at once: on PostgreSQL the upgrade runs in one transaction that first takes a
transaction-level advisory lock (released by its commit, never left on a pooled
connection); on SQLite it runs in a ``BEGIN IMMEDIATE`` transaction, the file's one writer.

A store created before migrations (its tables made directly, no ``alembic_version``) is
recognised by its ``meta`` table: it is stamped with the first revision, whose schema it
has, and upgraded from there, every row kept.

``meta.schema_version`` is what releases from before migrations check: they refuse a store
whose number is above theirs (1). A revision that makes the store unsafe for the releases
before it raises the number, so an older poller pointed at it stops with a clear message
instead of running beside newer replicas. This poller checks the Alembic revision instead,
and the number only as a second guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pathlib
from collections.abc import Iterator

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from poller.exceptions import SchemaVersionError, StoreError
from poller.store import tables

BASE = "0001"
"""The revision of the schema poller created before migrations."""

_LOCK_KEY = "poller.migrate:"
_PG_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:k || current_schema(), 0))")
_POLLER_TABLES = frozenset({"meta", "events", "deliveries", "resources"})


@dataclasses.dataclass(frozen=True, slots=True)
class Schema:
    """Where a database stands."""

    current: str | None
    """Its Alembic revision; None when it has none (empty, or made before migrations)."""
    head: str
    """The revision this poller brings it to."""
    legacy: bool = False
    """It holds a store created before migrations."""
    empty: bool = False
    """It holds no store at all."""

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    def describe(self) -> str:
        if self.empty:
            return "no store"
        if self.legacy:
            return "created before migrations (schema of revision " + BASE + ")"
        return f"{self.current}" + (" (head)" if self.up_to_date else f" (head is {self.head})")


@functools.cache
def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def _config(connection: sa.Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(pathlib.Path(__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this poller knows."""
    heads = _script().get_heads()
    if len(heads) != 1:
        raise StoreError(f"poller's migrations have {len(heads)} heads ({', '.join(heads)})")
    return heads[0]


def inspect(conn: sa.Connection) -> Schema:
    """Where the database behind ``conn`` stands; raises if it is newer than this poller."""
    names = set(sa.inspect(conn).get_table_names())
    newest = head()
    if "alembic_version" in names:
        heads = MigrationContext.configure(conn).get_current_heads()
        current = heads[0] if heads else None
        if current is not None and not _known(current):
            raise SchemaVersionError(
                f"the store has schema revision {current}, which this poller does not "
                f"know (its newest is {newest}); upgrade poller or point store.url at "
                "another database"
            )
        schema = Schema(current, newest, empty=current is None and not names & _POLLER_TABLES)
    elif "meta" in names:
        schema = Schema(None, newest, legacy=True)
    elif names & _POLLER_TABLES:
        raise StoreError(
            f"the database holds poller tables ({', '.join(sorted(names & _POLLER_TABLES))}) "
            "but no record of their schema; point store.url at poller's own database"
        )
    else:
        schema = Schema(None, newest, empty=True)
    if "meta" in names:
        _check_version(conn)
    return schema


def _known(revision: str) -> bool:
    try:
        _script().get_revision(revision)
    except CommandError:
        return False
    return True


def unknown_revision(engine: sa.Engine) -> str | None:
    """The store's revision if this poller does not know it (a newer one migrated it).

    One small read, cheap enough to repeat while the daemon runs.
    """
    with engine.connect() as conn:
        revisions = conn.scalars(sa.text("SELECT version_num FROM alembic_version")).all()
    return next((r for r in revisions if not _known(r)), None)


def _check_version(conn: sa.Connection) -> None:
    value = conn.scalar(sa.text("SELECT value FROM meta WHERE key = 'schema_version'"))
    if value is not None and int(value) > tables.SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the store has schema version {value}, newer than this poller's "
            f"{tables.SCHEMA_VERSION}; upgrade poller or point store.url at another database"
        )


@contextlib.contextmanager
def _locked(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that no other migrating replica can enter meanwhile."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # per schema: stores in other schemas of the same database do not wait on it
            conn.execute(_PG_LOCK, {"k": _LOCK_KEY})
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn
        conn.commit()


def status(engine: sa.Engine) -> Schema:
    """Where the store stands (``poller db current``)."""
    with engine.connect() as conn:
        return inspect(conn)


def upgrade(engine: sa.Engine) -> tuple[Schema, Schema]:
    """Bring the store to the head revision (creating it when empty); (before, after)."""
    with engine.connect() as conn:
        before = inspect(conn)
    if before.up_to_date:
        return before, before
    with _locked(engine) as conn:
        before = inspect(conn)  # again: another replica may have migrated meanwhile
        if not before.up_to_date:
            config = _config(conn)
            if before.legacy:
                command.stamp(config, BASE)
            command.upgrade(config, "head")
        after = inspect(conn)
    return before, after


def check(engine: sa.Engine, where: str) -> Schema:
    """For commands that use a store but never create or change its schema."""
    schema = status(engine)
    if schema.empty:
        raise StoreError(
            f"store.url: there is no store at {where} yet; start the daemon first "
            "(or point --config at the daemon's config)"
        )
    if not schema.up_to_date:
        raise StoreError(
            f"store.url: the store at {where} has schema {schema.describe()}; this poller "
            f"needs {schema.head}: run `poller db upgrade` (or start the daemon) first"
        )
    return schema
