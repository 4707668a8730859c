"""``poller status``: sources, sinks and leases at a glance, read from the store."""

from __future__ import annotations

import click

from poller import render
from poller.cli.common import (
    config_option,
    guarded,
    json_option,
    load_config,
    opened_store,
)
from poller.config import partial


@click.command()
@config_option
@json_option
@guarded
def status(config_path: str | None, as_json: bool) -> None:
    """Sources and sinks at a glance, read from the store (works while the daemon runs)."""
    from poller import status as status_mod

    config = load_config(config_path, reads=partial.operator())
    with opened_store(config) as opened:
        report = status_mod.gather(config, opened.store, opened.ledger, opened.sink_states)
    if as_json:
        click.echo(render.to_json(report))
        return
    for row in report["sources"]:
        row["last_poll"] = render.age(row["last_poll_at"], report["now"])
        row["last_success"] = render.age(row["last_success_at"], report["now"])
    click.echo(
        render.table(
            report["sources"],
            [
                "workspace",
                "source",
                "last_poll",
                "last_success",
                "tracked",
                "active",
                "error_streak",
                "last_error",
            ],
        )
    )
    click.echo()
    click.echo(
        render.table(
            report["sinks"],
            [
                "sink",
                "enabled",
                "circuit",
                "pending",
                "failing",
                "dead",
                "delivered",
                "oldest_pending",
            ],
        )
    )
    for row in report["sinks"]:
        if not row["configured"]:
            click.echo(
                f"sink {row['sink']}: not configured; its deliveries wait in the store "
                "until a sink of that name comes back"
            )
    if report["leases"]:
        for row in report["leases"]:
            row["expires"] = render.until(row["expires_at"], report["now"])
        click.echo()
        click.echo(render.table(report["leases"], ["workspace", "holder", "epoch", "expires"]))
