"""``poller sinks``: list, test and re-enable sinks."""

from __future__ import annotations

import click

from poller import render, utils
from poller.cli.common import (
    EXIT_USAGE,
    config_option,
    fail,
    guarded,
    json_option,
    known_sink,
    load_config,
    opened_store,
    run_async,
)
from poller.config import partial


@click.group()
def sinks() -> None:
    """Inspect, test and re-enable sinks."""


@sinks.command("list")
@config_option
@json_option
@guarded
def sinks_list(config_path: str | None, as_json: bool) -> None:
    """Every sink with its state and outbox figures."""
    from poller import status as status_mod

    config = load_config(config_path, reads=partial.operator())
    with opened_store(config) as opened:
        rows = status_mod.gather(config, opened.store, opened.ledger, opened.sink_states)["sinks"]
    if as_json:
        click.echo(render.to_json(rows))
    else:
        click.echo(
            render.table(
                rows,
                ["sink", "configured", "enabled", "circuit", "pending", "dead", "disabled_reason"],
            )
        )


@sinks.command("test")
@config_option
@click.argument("name")
@guarded
def sinks_test(config_path: str | None, name: str) -> None:
    """Send one signed poller.test event through a sink and print what the receiver answered.

    The event goes through the same sink code and signing as real ones but is not
    recorded: the outbox and its deliveries are left as they were. Exit 0 when delivered.
    """
    from poller import sinkcheck

    config = load_config(config_path, reads=partial.operator(sink=name))
    sink = next((s for s in config.sinks if s.name == name), None)
    if sink is None:
        known = ", ".join(s.name for s in config.sinks)
        fail(f"no sink named {name!r} in {config.source} (sinks: {known})", EXIT_USAGE)
        return
    event, outcome = run_async(sinkcheck.send(config, sink, now=utils.utcnow()))
    line = sinkcheck.describe(name, event, outcome)
    if not outcome.ok:
        fail(line)
    click.echo(line)


@sinks.command("enable")
@config_option
@click.argument("name")
@guarded
def sinks_enable(config_path: str | None, name: str) -> None:
    """Re-enable a sink (after a 410 Gone); its pending deliveries resume."""
    import dataclasses

    config = load_config(config_path, reads=partial.operator())
    known_sink(config, name)
    with opened_store(config) as opened:
        state = opened.sink_states.get(name)
        opened.sink_states.save(
            dataclasses.replace(
                state, enabled=True, disabled_reason=None, failing_since=None, next_probe_at=None
            )
        )
        # what waited on the sink's failure goes now, as when its circuit closes by itself
        released = opened.outbox.release(name)
    click.echo(
        f"sink {name} enabled; {released} waiting deliver{'y' if released == 1 else 'ies'} due now"
    )
