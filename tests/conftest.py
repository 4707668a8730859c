"""Fixtures shared by every suite: store URLs for each backend."""

from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator

import freezegun
import pytest
import sqlalchemy as sa

from poller import testing

# Mistral's SDK loads its models on first access: freezegun's walk over every module would
# load them under its fake datetime, and they would refuse real dates ever after.
freezegun.configure(extend_ignore_list=["mistralai"])

POSTGRES_URL = os.environ.get(
    "POLLER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means: not available here
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


@pytest.fixture(scope="session")
def postgres_reason() -> str | None:
    return _postgres_available()


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest, postgres_reason: str | None) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    if postgres_reason is not None:
        if os.environ.get("POLLER_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL required but unavailable at {POSTGRES_URL}: {postgres_reason}")
        pytest.skip(f"PostgreSQL unavailable at {POSTGRES_URL}: {postgres_reason}")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    problems: list[str] = []
    try:
        yield url.render_as_string(hide_password=False)
        if not request.node.get_closest_marker("foreign_events"):
            problems = _recorded_problems(url.render_as_string(hide_password=False))
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    assert not problems, f"events recorded off their schemas: {problems[:5]}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: os.PathLike[str]) -> str:
    """The URL of a fresh store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/poller.db"
    return str(request.getfixturevalue("postgres_url"))


def _recorded_problems(url: str) -> list[str]:
    """The schema problems of the events a store recorded (none when it cannot be read)."""
    engine = sa.create_engine(url)
    try:
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            return testing.recorded_problems(engine)
        return []
    finally:
        engine.dispose()


@pytest.fixture(autouse=True)
def recorded_events_match_their_schemas(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path
) -> Iterator[None]:
    """After each test, every event a SQLite store under its tmp_path recorded matches its
    published schema (docs/events); the PostgreSQL fixture checks its schema the same way.
    A test that records events of its own making on purpose is marked ``foreign_events``."""
    yield
    if request.node.get_closest_marker("foreign_events"):
        return
    problems = [
        p for db in sorted(tmp_path.rglob("*.db")) for p in _recorded_problems(f"sqlite:///{db}")
    ]
    assert not problems, f"events recorded off their schemas: {problems[:5]}"
