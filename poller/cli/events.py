"""``poller events``: list, show, tail, describe and replay recorded events."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

import click

from poller import render
from poller.cli.common import (
    EXIT_USAGE,
    config_option,
    fail,
    guarded,
    json_option,
    known_sink,
    load_config,
    opened_store,
    parse_time,
)
from poller.config import partial


@click.group()
def events() -> None:
    """Inspect and replay recorded events."""


@events.command("list")
@config_option
@json_option
@click.option(
    "--status", type=click.Choice(["pending", "failed", "dead", "delivered"]), default=None
)
@click.option("--sink", default=None)
@click.option("--type", "event_type", default=None, help="Event type; * matches anything.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@guarded
def events_list(
    config_path: str | None,
    as_json: bool,
    status: str | None,
    sink: str | None,
    event_type: str | None,
    limit: int,
) -> None:
    """Deliveries, newest first."""
    config = load_config(config_path, reads=partial.operator())
    with opened_store(config) as opened:
        rows = opened.ledger.list_deliveries(
            status=status, sink=sink, event_type=event_type, limit=limit
        )
    for row in rows:
        if row.pop("failing"):
            row["status"] = "failed"
    if as_json:
        click.echo(render.to_json(rows))
    else:
        click.echo(
            render.table(
                rows,
                [
                    "id",
                    "type",
                    "resource_id",
                    "sink",
                    "status",
                    "attempts",
                    "last_status_code",
                    "timestamp",
                ],
            )
        )


@events.command("show")
@config_option
@json_option
@click.argument("event_id")
@guarded
def events_show(config_path: str | None, as_json: bool, event_id: str) -> None:
    """An event's envelope and every delivery attempt."""
    config = load_config(config_path, reads=partial.operator())
    with opened_store(config) as opened:
        detail = opened.ledger.event_detail(event_id)
    if detail is None:
        fail(f"no event with id {event_id!r}; `poller events list` shows recorded ids")
        return
    if as_json:
        click.echo(render.to_json(detail))
        return
    click.echo(json.dumps(detail["event"], indent=2))
    for d in detail["deliveries"]:
        click.echo(f"\nsink {d['sink']}: {d['status']}, {d['attempts']} attempt(s)")
        if d["log"]:
            click.echo(
                render.table(
                    d["log"], ["attempted_at", "ok", "status_code", "duration_ms", "error"]
                )
            )


@events.command("tail")
@config_option
@json_option
@click.option("--type", "event_type", default=None, help="Only types matching this glob.")
@click.option("--workspace", default=None, help="Only events of this workspace.")
@click.option("--since", default=None, help="Start with events recorded since TIME or AGE.")
@click.option(
    "-n", "--lines", "last", type=click.IntRange(0), default=None, help="Start with the last N."
)
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=0.5,
    show_default=True,
    help="Seconds between two reads of the store.",
)
@guarded
def events_tail(
    config_path: str | None,
    as_json: bool,
    event_type: str | None,
    workspace: str | None,
    since: str | None,
    last: int | None,
    interval: float,
) -> None:
    """Follow events as they are recorded, from now, until Ctrl-C (works beside the daemon)."""
    import threading

    from poller import catalog, store, tail
    from poller.sinks.base import dumps
    from poller.store.feed import Feed, Notices

    config = load_config(config_path, reads=partial.operator())
    if event_type is not None:
        known = [t.name for t in catalog.TYPES]
        if not any(tail.type_pattern(event_type).fullmatch(name) for name in known):
            fail(
                f"--type {event_type!r} matches no event type; known types: {', '.join(known)}",
                EXIT_USAGE,
            )
    names = [ws.name for ws in config.workspaces]
    if workspace is not None and workspace not in names:
        fail(
            f"--workspace {workspace!r} is not a workspace of the config; "
            f"its workspaces: {', '.join(names)}",
            EXIT_USAGE,
        )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _signum, _frame: stop.set())

    def emit(event: Any) -> None:
        click.echo(dumps(event.envelope()).decode() if as_json else render.event_line(event))

    def on_error(problem: str | None) -> None:
        message = f"store unavailable, retrying: {problem}" if problem else "store back"
        click.echo(f"poller: {message}", err=True)

    engine = store.create_engine(config.store.url, create=False)
    notices = Notices(engine.url) if engine.dialect.name == "postgresql" else None
    try:
        feed = Feed(engine)
        start = feed.start(
            since=parse_time(since), last=last, event_type=event_type, workspace=workspace
        )
        tail.follow(
            feed,
            start,
            stop=stop,
            emit=emit,
            matches=tail.matcher(event_type, workspace),
            on_error=on_error,
            interval=interval,
            notices=notices,
        )
    except BrokenPipeError:  # the reader went away (| head): done, quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if notices is not None:
            notices.close()
        engine.dispose()


@events.command("schema")
@click.argument("event_type", required=False)
@click.option("--cloudevents", is_flag=True, help="The CloudEvents 1.0 form (format: cloudevents).")
@click.option("--asyncapi", "as_asyncapi", is_flag=True, help="The AsyncAPI 3.0 document.")
@click.option(
    "--write",
    "directory",
    default=None,
    metavar="DIR",
    help="Write every document under DIR (as docs/events/ keeps them).",
)
def events_schema(
    event_type: str | None, cloudevents: bool, as_asyncapi: bool, directory: str | None
) -> None:
    """JSON Schema of events (one TYPE, or any), or the AsyncAPI document of every channel."""
    from pathlib import Path

    from poller import asyncapi, eventdocs, eventschema

    if directory is not None:
        for path in eventdocs.write(Path(directory)):
            click.echo(str(path))
        return
    if as_asyncapi:
        click.echo(eventdocs.dumps(asyncapi.document()), nl=False)
        return
    form = eventschema.CLOUDEVENTS if cloudevents else eventschema.ENVELOPE
    if event_type is None:
        click.echo(eventdocs.dumps(eventschema.combined(form)), nl=False)
        return
    try:
        document = eventschema.schema(event_type, form)
    except KeyError:
        known = ", ".join(t.name for t in eventschema.event_types())
        fail(f"no event type {event_type!r}; known types: {known}", EXIT_USAGE)
        return
    click.echo(eventdocs.dumps(document), nl=False)


@events.command("replay")
@config_option
@click.argument("event_ids", nargs=-1)
@click.option("--since", default=None, help="Events recorded since TIME (ISO 8601) or AGE (2h).")
@click.option("--until", default=None, help="Events recorded until TIME or AGE.")
@click.option("--sink", default=None, help="Only towards this sink.")
@guarded
def events_replay(
    config_path: str | None,
    event_ids: tuple[str, ...],
    since: str | None,
    until: str | None,
    sink: str | None,
) -> None:
    """Queue events again (delivered ones too), under the same ids."""
    if not event_ids and since is None:
        fail("name event ids or give --since", EXIT_USAGE)
    config = load_config(config_path, reads=partial.operator())
    if sink is not None:
        known_sink(config, sink)
    with opened_store(config) as opened:
        if event_ids:
            unknown = sorted(set(event_ids) - opened.ledger.known_event_ids(list(event_ids)))
            if unknown:
                fail(f"no event with id {', '.join(unknown)}; nothing was queued")
        count = opened.ledger.replay(
            ids=list(event_ids),
            since=parse_time(since),
            until=parse_time(until),
            sink=sink,
        )
    click.echo(f"queued {count} deliver{'y' if count == 1 else 'ies'}")
