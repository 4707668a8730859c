"""The store's migrations, on SQLite and PostgreSQL: fresh, from the release before, concurrent."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlmodel import SQLModel

from poller import store as store_mod
from poller.cli import main
from poller.exceptions import SchemaVersionError, StoreError
from poller.model import Event
from poller.schemawatch import SchemaWatch
from poller.store import Ledger, Outbox, SinkStates, Store, migrate, tables

HERE = pathlib.Path(__file__).parent
pytestmark = pytest.mark.foreign_events  # the old store's rows are written by hand
T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def run_script(engine: sa.Engine, path: pathlib.Path) -> None:
    """Run a SQL file (statements end with ';' at the end of a line) in one transaction."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.startswith("--"))
    with engine.begin() as conn:
        for statement in text.split(";\n"):
            if statement.strip():
                conn.exec_driver_sql(statement.strip().rstrip(";"))


def legacy_store(url: str) -> None:
    """A store as poller wrote it before migrations, with rows of every kind."""
    engine = store_mod.open_engine(url)
    run_script(engine, HERE / f"legacy_{engine.dialect.name}.sql")
    engine.dispose()


@pytest.fixture
def engine(store_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(store_url)
    yield engine
    engine.dispose()


def dump(engine: sa.Engine) -> dict[str, Any]:
    """Everything the schema says about each table, in a comparable form."""
    inspector = sa.inspect(engine)
    found: dict[str, Any] = {}
    for name in sorted(set(inspector.get_table_names()) - {"alembic_version"}):
        found[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("autoincrement"))
                for c in inspector.get_columns(name)
            ],
            "pk": inspector.get_pk_constraint(name)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(name)
            ),
            "uniques": sorted(
                tuple(u["column_names"]) for u in inspector.get_unique_constraints(name)
            ),
        }
    return found


def test_migrated_store_has_no_drift_from_the_tables(engine: sa.Engine) -> None:
    """Autogenerate finds nothing between the migrated database and poller/store/tables.py."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []


def test_migrated_store_equals_a_freshly_created_one(
    engine: sa.Engine, store_url: str, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    """Migrations build the very schema ``create_all`` of the tables builds."""
    if engine.dialect.name == "sqlite":
        fresh_url = f"sqlite:///{tmp_path}/fresh.db"
    else:
        fresh_url = str(request.getfixturevalue("postgres_url"))
    fresh = store_mod.open_engine(fresh_url)
    SQLModel.metadata.create_all(fresh)
    try:
        assert dump(engine) == dump(fresh)
    finally:
        fresh.dispose()


def test_there_is_one_head() -> None:
    """The revisions form one line: a new one goes on top of the current head."""
    assert migrate.head()
    assert len(migrate._script().get_heads()) == 1


@pytest.mark.foreign_events  # rows written by a script, as an old release left them
def test_store_from_before_migrations_is_upgraded_keeping_every_row(store_url: str) -> None:
    """A store made by the release before migrations is stamped, upgraded, and loses nothing."""
    legacy_store(store_url)
    engine = store_mod.open_engine(store_url)
    assert migrate.status(engine).legacy
    before, after = migrate.upgrade(engine)
    assert before.legacy and after.current == migrate.head() and after.up_to_date
    outbox, store = Outbox(engine), Store(engine, lambda _e: ["hook"])
    ledger, sink_states = Ledger(engine), SinkStates(engine)
    assert [e.id for e in ledger.events()] == ["evt_legacy_created", "evt_legacy_succeeded"]
    assert ledger.events()[1].data == {"id": "job-1", "status": "SUCCESS"}
    rows = {r["id"]: r for r in ledger.list_deliveries()}
    assert rows["evt_legacy_created"]["status"] == "delivered"
    assert rows["evt_legacy_created"]["delivered_at"] == T0
    assert rows["evt_legacy_succeeded"]["status"] == "pending"
    assert rows["evt_legacy_succeeded"]["last_status_code"] == 503
    detail = ledger.event_detail("evt_legacy_created")
    assert detail is not None and detail["deliveries"][0]["log"][0]["status_code"] == 200
    assert store.load_resources("default", "batch_jobs")["job-1"].status == "SUCCESS"
    state = store.source_state("default", "batch_jobs")
    assert state.baselined and state.cursor == 1764237600
    assert sink_states.get("hook").failing_since == T0 + dt.timedelta(seconds=5)
    # the pending one is still to send, and new events take the next numbers
    waiting = outbox.probe_candidate("hook")
    assert waiting is not None and waiting.event.id == "evt_legacy_succeeded"
    new = Event("evt_after_upgrade", "batch_job.created", "default", "job-2", T0, {})
    assert store.enqueue([new], T0) == [new]
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diff == []
    engine.dispose()


@pytest.mark.foreign_events  # rows written by a script, as an old release left them
def test_daemon_start_upgrades_a_store_from_before_migrations(store_url: str) -> None:
    """The daemon's engine upgrades an old store itself; the schema version row follows."""
    legacy_store(store_url)
    engine = store_mod.create_engine(store_url)
    with engine.connect() as conn:
        version = conn.scalar(sa.text("select value from meta where key = 'schema_version'"))
    assert version == str(tables.SCHEMA_VERSION)
    assert migrate.status(engine).up_to_date
    engine.dispose()


@pytest.mark.foreign_events  # rows written by a script, as an old release left them
def test_operator_commands_refuse_a_store_that_needs_upgrading(store_url: str) -> None:
    """Commands that only read say to run `poller db upgrade`, and change nothing."""
    legacy_store(store_url)
    with pytest.raises(StoreError, match="poller db upgrade"):
        store_mod.create_engine(store_url, create=False)
    engine = store_mod.open_engine(store_url)
    assert migrate.status(engine).legacy
    engine.dispose()


def test_operator_commands_never_create_a_store(store_url: str) -> None:
    """An empty database stays empty when an operator command opens it."""
    engine = store_mod.open_engine(store_url)  # the SQLite file exists, as an empty one
    with pytest.raises(StoreError, match="no store at"):
        store_mod.create_engine(store_url, create=False)
    assert sa.inspect(engine).get_table_names() == []
    engine.dispose()


def test_unknown_revision_is_refused(engine: sa.Engine, store_url: str) -> None:
    """A store migrated by a newer poller is refused with a message saying what to do."""
    with engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '9999'"))
    with pytest.raises(SchemaVersionError, match=r"9999.*upgrade poller"):
        store_mod.create_engine(store_url)


def test_replicas_starting_together_migrate_once(store_url: str) -> None:
    """Four engines upgrading one empty store at once: one migrates, all end at the head."""
    engines = [store_mod.open_engine(store_url) for _ in range(4)]
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(migrate.upgrade, engines))
        migrated = [before for before, _after in results if not before.up_to_date]
        assert len(migrated) == 1
        assert all(after.up_to_date for _before, after in results)
        with engines[0].connect() as conn:
            count = conn.scalar(sa.text("select count(*) from meta where key = 'schema_version'"))
        assert count == 1
    finally:
        for engine in engines:
            engine.dispose()


def write_config(tmp_path: pathlib.Path, url: str) -> str:
    path = tmp_path / "poller.yaml"
    path.write_text(f"store:\n  url: '{url}'\nsinks:\n  - name: hook\n    type: log\n")
    return str(path)


@pytest.mark.foreign_events  # rows written by a script, as an old release left them
def test_db_current_and_upgrade_commands(store_url: str, tmp_path: pathlib.Path) -> None:
    """`poller db current` names the revision; `poller db upgrade` brings an old store to head."""
    legacy_store(store_url)
    config = write_config(tmp_path, store_url)
    result = CliRunner().invoke(main, ["db", "current", "--config", config])
    assert result.exit_code == 0, result.output
    assert "created before migrations" in result.output
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", config])
    assert result.exit_code == 0, result.output
    assert f"to {migrate.head()}" in result.output
    result = CliRunner().invoke(main, ["db", "current", "--config", config, "--json"])
    assert result.exit_code == 0, result.output
    assert f'"current": "{migrate.head()}"' in result.output
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", config])
    assert "nothing to do" in result.output


def test_db_upgrade_never_creates_a_store(tmp_path: pathlib.Path) -> None:
    """`poller db upgrade` on a missing SQLite file says so and leaves no file behind."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path}/none.db")
    result = CliRunner().invoke(main, ["db", "upgrade", "--config", config])
    assert result.exit_code == 2
    assert "no store at" in result.output
    assert not os.path.exists(tmp_path / "none.db")


def test_a_newer_revision_is_named_while_running(engine: sa.Engine) -> None:
    """The daemon's cheap look at the store names a revision this poller does not know, only."""
    assert migrate.unknown_revision(engine) is None
    with engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '9999'"))
    assert migrate.unknown_revision(engine) == "9999"


async def test_the_schema_watch_halts_and_ends_on_a_newer_revision(engine: sa.Engine) -> None:
    """Watching a store that a newer poller migrates: it halts delivery, then raises."""
    halted = asyncio.Event()
    watch = SchemaWatch(engine, interval=0.05, on_newer=halted.set)
    task = asyncio.create_task(watch.run(asyncio.Event()))
    await asyncio.sleep(0)
    assert not task.done() and not halted.is_set()
    with engine.begin() as conn:
        conn.execute(sa.text("update alembic_version set version_num = '9999'"))
    with pytest.raises(SchemaVersionError, match=r"revision 9999.*stopped sending"):
        await asyncio.wait_for(task, 20)
    assert halted.is_set()
