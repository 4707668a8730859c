"""Workspace leases on a real PostgreSQL: take, renew, expire, steal, fence, release, balance.

Times are the database's, so expiry is waited for as a condition on the database, never
with a sleep of the test's own.
"""

from __future__ import annotations

import datetime as dt
import json
import pathlib
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from poller import store as store_mod
from poller.exceptions import LeaseLost, StoreError
from poller.leadership import Leadership, share
from poller.store import Leases, all_leases

from ..acceptance.conftest import wait_until

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(postgres_url: str) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(postgres_url)
    yield engine
    engine.dispose()


def expired(engine: sa.Engine, workspace: str) -> bool:
    """The lease of ``workspace`` is past its expiry in the database's time."""
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                sa.text("select expires_at <= clock_timestamp() from leases where workspace = :w"),
                {"w": workspace},
            )
        )


def fence_in_transaction(engine: sa.Engine, leases: Leases, workspace: str, epoch: int) -> None:
    with engine.begin() as conn:
        leases.fence(conn, workspace, epoch)


def test_take_gives_epoch_one_and_keeps_others_out(engine: sa.Engine) -> None:
    """A free lease is taken at epoch 1; a second replica cannot take it while it holds."""
    a = Leases(engine, replica="a", ttl=30)
    b = Leases(engine, replica="b", ttl=30)
    assert a.acquire(["w1"], 1) == {"w1": 1}
    assert b.acquire(["w1"], 1) == {}
    [lease] = all_leases(engine)
    assert (lease.workspace, lease.holder, lease.epoch) == ("w1", "a", 1)
    assert lease.expires_at is not None
    assert lease.expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)


def test_take_honours_the_limit(engine: sa.Engine) -> None:
    """A replica takes no more leases than it is asked to."""
    a = Leases(engine, replica="a", ttl=30)
    assert a.acquire(["w1", "w2", "w3"], 2) == {"w1": 1, "w2": 1}


def test_renew_extends_the_expiry(engine: sa.Engine) -> None:
    """Renewal moves the expiry forward and keeps the epoch."""
    a = Leases(engine, replica="a", ttl=30)
    a.acquire(["w1"], 1)
    before = all_leases(engine)[0].expires_at
    assert a.renew({"w1": 1}) == {"w1": 1}
    after = all_leases(engine)[0].expires_at
    assert before is not None and after is not None and after > before


def test_renew_of_a_stale_epoch_does_nothing(engine: sa.Engine) -> None:
    """A replica cannot renew a lease at an epoch it no longer holds."""
    a = Leases(engine, replica="a", ttl=30)
    a.acquire(["w1"], 1)
    assert a.renew({"w1": 7}) == {}


def test_expired_lease_is_stolen_with_the_next_epoch(engine: sa.Engine) -> None:
    """Once a lease expires (database time), another replica takes it at epoch + 1."""
    a = Leases(engine, replica="a", ttl=1)
    b = Leases(engine, replica="b", ttl=30)
    a.acquire(["w1"], 1)
    wait_until(lambda: expired(engine, "w1"), limit=10)
    assert a.renew({"w1": 1}) == {}, "an expired lease is not renewed"
    assert b.acquire(["w1"], 1) == {"w1": 2}
    assert all_leases(engine)[0].holder == "b"


def test_fence_passes_for_the_holder_at_its_epoch(engine: sa.Engine) -> None:
    """The fence lets the holder's write through at the epoch it holds."""
    a = Leases(engine, replica="a", ttl=30)
    a.acquire(["w1"], 1)
    fence_in_transaction(engine, a, "w1", 1)


def test_fence_refuses_a_stale_epoch(engine: sa.Engine) -> None:
    """A former leader's write fails once the lease has passed to another at epoch + 1."""
    a = Leases(engine, replica="a", ttl=1)
    b = Leases(engine, replica="b", ttl=30)
    a.acquire(["w1"], 1)
    wait_until(lambda: expired(engine, "w1"), limit=10)
    b.acquire(["w1"], 1)
    with pytest.raises(LeaseLost, match="passed to b"):
        fence_in_transaction(engine, a, "w1", 1)
    fence_in_transaction(engine, b, "w1", 2)


def test_fence_refuses_an_expired_lease(engine: sa.Engine) -> None:
    """A lease past its expiry lets no write through, even if nobody took it yet."""
    a = Leases(engine, replica="a", ttl=1)
    a.acquire(["w1"], 1)
    wait_until(lambda: expired(engine, "w1"), limit=10)
    with pytest.raises(LeaseLost, match="expired"):
        fence_in_transaction(engine, a, "w1", 1)


def test_fence_refuses_a_workspace_never_leased(engine: sa.Engine) -> None:
    """Without a lease row there is no write."""
    a = Leases(engine, replica="a", ttl=30)
    with pytest.raises(LeaseLost):
        fence_in_transaction(engine, a, "w1", 1)


def test_a_fenced_transaction_keeps_the_lease_from_changing_hands(engine: sa.Engine) -> None:
    """While a poll's transaction holds the fence, others skip the lease; its holder renews."""
    a = Leases(engine, replica="a", ttl=1)
    b = Leases(engine, replica="b", ttl=30)
    a.acquire(["w1"], 1)
    with engine.connect() as conn, conn.begin():
        a.fence(conn, "w1", 1)
        renewed: dict[str, int] = {}
        renewal = threading.Thread(target=lambda: renewed.update(a.renew({"w1": 1})))
        renewal.start()
        renewal.join(timeout=10)
        assert renewed == {"w1": 1}, "the holder's renewal waits for nothing"
        # asked on the poll's own connection, so its transaction is never idle meanwhile
        expiry = sa.text("select expires_at <= clock_timestamp() from leases")
        wait_until(lambda: bool(conn.scalar(expiry)), limit=10)
        assert b.acquire(["w1"], 1) == {}, "a locked lease is skipped, not taken"
    assert b.acquire(["w1"], 1) == {"w1": 2}


def test_a_frozen_transaction_is_ended_after_a_ttl(engine: sa.Engine) -> None:
    """A poll transaction left idle for a TTL (its replica frozen) is ended by the server."""
    a = Leases(engine, replica="a", ttl=1)
    b = Leases(engine, replica="b", ttl=30)
    a.acquire(["w1"], 1)
    with engine.connect() as conn:
        conn.begin()
        a.fence(conn, "w1", 1)
        wait_until(lambda: bool(b.acquire(["w1"], 1)), limit=10)
        with pytest.raises(sa.exc.DBAPIError):
            conn.execute(sa.text("select 1"))
    assert all_leases(engine)[0].holder == "b"


def test_release_hands_over_at_once(engine: sa.Engine) -> None:
    """A released lease has no holder and is taken at once by another, at epoch + 1."""
    a = Leases(engine, replica="a", ttl=30)
    b = Leases(engine, replica="b", ttl=30)
    a.acquire(["w1"], 1)
    a.release({"w1": 1})
    assert all_leases(engine)[0].holder is None
    assert b.acquire(["w1"], 1) == {"w1": 2}
    with pytest.raises(LeaseLost):
        fence_in_transaction(engine, a, "w1", 1)


def test_heartbeats_count_live_replicas(engine: sa.Engine) -> None:
    """Each replica's heartbeat counts while it lasts; leaving removes it at once."""
    a = Leases(engine, replica="a", ttl=30)
    b = Leases(engine, replica="b", ttl=30)
    assert a.heartbeat() == 1
    assert b.heartbeat() == 2
    b.leave({})
    assert a.heartbeat() == 1


def test_leases_refuse_a_sqlite_store(tmp_path: pathlib.Path) -> None:
    """Leases are a PostgreSQL feature: a SQLite engine is refused with one line."""
    engine = store_mod.create_engine(f"sqlite:///{tmp_path}/p.db")
    try:
        with pytest.raises(StoreError, match="PostgreSQL"):
            Leases(engine, replica="a", ttl=30)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("workspaces", "live", "expected"), [(1, 3, 1), (4, 2, 2), (5, 2, 3), (3, 0, 3), (0, 2, 0)]
)
def test_share(workspaces: int, live: int, expected: int) -> None:
    """A replica leads at most ceil(workspaces / live replicas)."""
    assert share(workspaces, live) == expected


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_two_replicas_share_the_workspaces(engine: sa.Engine) -> None:
    """With two live replicas, four workspaces end up two on each, none on both."""
    names = ["w1", "w2", "w3", "w4"]
    a = Leadership(Leases(engine, replica="a", ttl=30), names)
    b = Leadership(Leases(engine, replica="b", ttl=30), names)
    assert a.turn() == ({"w1": 1, "w2": 1, "w3": 1, "w4": 1}, [])
    assert b.turn() == ({}, [])  # b counts itself now; a still holds everything
    gained, lost = a.turn()
    assert (gained, lost) == ({}, ["w3", "w4"])
    assert b.turn() == ({"w3": 2, "w4": 2}, [])
    assert set(a.held) == {"w1", "w2"} and set(b.held) == {"w3", "w4"}
    assert {lease.holder for lease in all_leases(engine)} == {"a", "b"}


def test_leadership_fence_is_local_first(engine: sa.Engine) -> None:
    """A replica whose renewal is late past the trusted time refuses its own write at once."""
    clock = Clock()
    a = Leadership(Leases(engine, replica="a", ttl=30), ["w1"], monotonic=clock)
    a.turn()
    check = a.fence("w1")
    with engine.begin() as conn:
        check(conn)
    clock.now += 21  # more than two thirds of the TTL since the last renewal began
    with pytest.raises(LeaseLost, match="stalled"), engine.begin() as conn:
        check(conn)


def test_stalled_replica_gives_its_leases_up(engine: sa.Engine) -> None:
    """A turn that comes too late releases every lease instead of renewing it."""
    clock = Clock()
    a = Leadership(Leases(engine, replica="a", ttl=30), ["w1", "w2"], monotonic=clock)
    a.turn()
    clock.now += 25
    assert a.turn() == ({}, ["w1", "w2"])
    assert a.held == {}
    assert {lease.holder for lease in all_leases(engine)} == {None}
    b = Leadership(Leases(engine, replica="b", ttl=30), ["w1", "w2"])
    assert b.turn()[0] == {"w1": 2}, "its share with a still live: one of two, taken at once"


def test_status_shows_who_polls_what(
    engine: sa.Engine, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    """`poller status` (JSON and table) lists each workspace's holder, epoch and expiry."""
    from click.testing import CliRunner

    from poller.cli import main

    names = ["default", "research"]
    Leadership(Leases(engine, replica="pod-a:1", ttl=30), names).turn()
    config = tmp_path / "p.yaml"
    config.write_text(
        f"store:\n  url: '{postgres_url}'\nworkspaces:\n  - name: default\n  - name: research\n"
    )
    result = CliRunner().invoke(main, ["status", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    leases = json.loads(result.output)["leases"]
    assert [(x["workspace"], x["holder"], x["epoch"]) for x in leases] == [
        ("default", "pod-a:1", 1),
        ("research", "pod-a:1", 1),
    ]
    assert all(dt.datetime.fromisoformat(x["expires_at"]) > dt.datetime.now(dt.UTC) for x in leases)
    table = CliRunner().invoke(main, ["status", "--config", str(config)]).output
    rows = [
        line.split()
        for line in table.splitlines()
        if line.startswith(("WORKSPACE  HOLDER", "default  ", "research  "))
    ]
    assert rows[-3][:3] == ["WORKSPACE", "HOLDER", "EPOCH"]
    assert rows[-2][:4] == ["default", "pod-a:1", "1", "in"]


def test_status_lists_every_live_replica_leader_or_standby(
    engine: sa.Engine, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    """`poller status` (JSON and table) lists each live replica — its role, heartbeat age and
    the workspaces it leads — standbys included, and none whose heartbeat expired."""
    from click.testing import CliRunner

    from poller.cli import main

    names = ["default", "research"]
    gone = Leases(engine, replica="pod-c:1", ttl=1)
    gone.heartbeat()
    wait_until(lambda: store_mod.live_replicas(engine) == [], limit=10)
    Leadership(Leases(engine, replica="pod-a:1", ttl=30), names).turn()
    Leadership(Leases(engine, replica="pod-b:1", ttl=30), names).turn()
    config = tmp_path / "p.yaml"
    config.write_text(
        f"store:\n  url: '{postgres_url}'\nha:\n  lease_ttl: 30s\n"
        "workspaces:\n  - name: default\n  - name: research\n"
    )
    result = CliRunner().invoke(main, ["status", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    replicas = json.loads(result.output)["replicas"]
    assert [(x["replica"], x["role"], x["leads"]) for x in replicas] == [
        ("pod-a:1", "leader", ["default", "research"]),
        ("pod-b:1", "standby", []),
    ]
    assert all(0 <= x["heartbeat_age_s"] < 20 for x in replicas)
    table = CliRunner().invoke(main, ["status", "--config", str(config)]).output
    rows = [line.split() for line in table.splitlines() if line.startswith(("REPLICA", "pod-"))]
    assert rows[0] == ["REPLICA", "ROLE", "HEARTBEAT", "UP", "LEADS"]
    assert rows[1][:2] == ["pod-a:1", "leader"] and rows[1][-2:] == ["default,", "research"]
    assert rows[2][:2] == ["pod-b:1", "standby"] and rows[2][-1] == "-"


async def test_a_standby_replica_polls_nothing_and_is_ready(
    engine: sa.Engine, postgres_url: str
) -> None:
    """A replica whose workspace another leads schedules no poll and answers ready."""
    import asyncio

    from poller import config as config_mod
    from poller import ops
    from poller.app import App
    from poller.runner import Runner

    Leases(engine, replica="other", ttl=30).acquire(["default"], 1)
    config = config_mod.parse(
        f"mistral:\n  base_url: http://127.0.0.1:9\nstore:\n  url: '{postgres_url}'\n"
        "ha:\n  lease_ttl: 3s\n  replica_id: standby\n"
    )
    async with App(config) as app:
        assert app.leadership is not None
        turned = threading.Event()
        turn = app.leadership.turn

        def observed(*, balance: bool = True) -> tuple[dict[str, int], list[str]]:
            try:
                return turn(balance=balance)
            finally:
                turned.set()

        app.leadership.turn = observed  # type: ignore[method-assign]
        stop = asyncio.Event()
        running = asyncio.create_task(Runner(app).run(stop, grace=1))
        assert await asyncio.to_thread(turned.wait, 20)
        check = ops.ReadinessCheck(app.board, app.store, leases=app.leadership.not_ready)
        assert await check() == []
        assert app.board.sources == {} and app.leadership.held == {}
        stop.set()
        await running
    assert [lease.holder for lease in all_leases(engine)] == ["other"]


def test_peers_end_a_transaction_the_server_timer_misses(postgres_url: str) -> None:
    """A peer session idle in a transaction past the TTL (no timer of its own) is ended."""
    replica = store_mod.create_engine(postgres_url)
    store_mod.limit_idle_transactions(replica, 1)
    with replica.connect() as conn:
        name = conn.scalar(sa.text("select current_setting('application_name')"))
    assert name.startswith("poller ")
    # a frozen peer: same store, same name, and no idle timeout (as mid-pipeline)
    frozen = sa.create_engine(
        sa.engine.make_url(postgres_url).update_query_dict({"application_name": name}, append=False)
    )
    other = sa.create_engine(
        sa.engine.make_url(postgres_url).update_query_dict({"application_name": "other"})
    )
    a = Leases(replica, replica="a", ttl=1)
    b = Leases(replica, replica="b", ttl=1)
    try:
        a.acquire(["w1"], 1)
        with frozen.connect() as stuck, other.connect() as bystander:
            stuck.begin()
            stuck.execute(sa.text("select * from leases for key share"))
            bystander.begin()
            bystander.execute(sa.text("select 1"))
            wait_until(lambda: b.end_stale_transactions() == 1, limit=10)
            with pytest.raises(sa.exc.DBAPIError):
                stuck.execute(sa.text("select 1"))
            bystander.execute(sa.text("select 1"))  # another application is left alone
        wait_until(lambda: expired(replica, "w1"), limit=10)
        assert b.acquire(["w1"], 1) == {"w1": 2}
    finally:
        frozen.dispose()
        other.dispose()
        replica.dispose()
