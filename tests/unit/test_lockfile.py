"""One daemon per SQLite store: the lock file beside the database."""

from __future__ import annotations

import pathlib

import pytest

from poller.exceptions import StoreInUseError
from poller.store import lockfile


def test_lock_path_is_beside_a_sqlite_store() -> None:
    """A SQLite store's lock is `<db>.lock`; a PostgreSQL store has none."""
    assert lockfile.path_for("sqlite:////var/lib/poller/poller.db") == pathlib.Path(
        "/var/lib/poller/poller.db.lock"
    )
    assert lockfile.path_for("postgresql+psycopg://u@h/db") is None


def test_second_holder_is_refused_with_the_first_named(tmp_path: pathlib.Path) -> None:
    """While one holds the lock, a second is refused in one line naming the first."""
    path = tmp_path / "p.db.lock"
    with lockfile.exclusive(path, "host-a:41"):
        with pytest.raises(StoreInUseError) as caught:
            with lockfile.exclusive(path, "host-b:42"):
                pass  # pragma: no cover - never entered
    message = str(caught.value)
    assert "\n" not in message
    assert "replica host-a:41" in message and str(tmp_path / "p.db") in message


def test_lock_is_free_again_after_release(tmp_path: pathlib.Path) -> None:
    """Leaving the block frees the lock for the next daemon, which then names itself."""
    path = tmp_path / "p.db.lock"
    with lockfile.exclusive(path, "host-a:41"):
        pass
    with lockfile.exclusive(path, "host-b:42"):
        assert path.read_text().startswith("replica host-b:42, pid ")
