"""``poller db``: the store's schema revision, and upgrading it."""

from __future__ import annotations

import click

from poller import render
from poller.cli.common import (
    config_option,
    guarded,
    json_option,
    load_config,
)
from poller.config import partial


@click.group()
def db() -> None:
    """The store's schema: where it stands, and upgrading it."""


@db.command("current")
@config_option
@json_option
@guarded
def db_current(config_path: str | None, as_json: bool) -> None:
    """The store's schema revision and the one this poller needs."""
    from poller import store
    from poller.store import migrate

    config = load_config(config_path, reads=partial.operator())
    engine = store.open_engine(config.store.url, create=False)
    with store.opening(engine, config.store.url):
        schema = migrate.status(engine)
    engine.dispose()
    if as_json:
        fields = ("current", "head", "up_to_date", "legacy", "empty")
        click.echo(render.to_json({k: getattr(schema, k) for k in fields}))
    else:
        click.echo(schema.describe())


@db.command("upgrade")
@config_option
@guarded
def db_upgrade(config_path: str | None) -> None:
    """Bring the store's schema to this poller's revision (the daemon also does it at start)."""
    from poller import store
    from poller.store import migrate

    config = load_config(config_path, reads=partial.operator())
    engine = store.open_engine(config.store.url, create=False)
    with store.opening(engine, config.store.url):
        if migrate.status(engine).empty:
            migrate.check(engine, where=store.safe_url(config.store.url))  # says: no store yet
        before, after = migrate.upgrade(engine)
    engine.dispose()
    if before.up_to_date:
        click.echo(f"the store is at {after.current}, this poller's revision: nothing to do")
    else:
        click.echo(f"upgraded the store from {before.describe()} to {after.current}")
