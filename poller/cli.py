"""The ``poller`` command: parse, call, print. Logic lives in the modules it calls."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import os
import pathlib
import signal
import sys
import tempfile
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from poller import __version__, logs, render, utils
from poller import config as config_mod
from poller.exceptions import ConfigError, PollerError, StoreError, UsageError

if TYPE_CHECKING:
    from poller.runner import SourceOutcome

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, then exit: no traceback for errors a user can fix."""
    click.echo(f"poller: {message}", err=True)
    sys.exit(code)


def fail_config(exc: ConfigError) -> None:
    """One line per problem of the config on stderr, then exit 2."""
    for problem in exc.problems:
        click.echo(f"poller: config error: {problem.render()}", err=True)
    sys.exit(EXIT_USAGE)


def config_option(func: F) -> F:
    return click.option(
        "--config",
        "-c",
        "config_path",
        metavar="PATH",
        default=None,
        help=f"Config file (default: $POLLER_CONFIG, else {config_mod.DEFAULT_CONFIG_PATH}).",
    )(func)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def load_config(config_path: str | None, *, daemon: bool = False) -> config_mod.Config:
    """The config, or every problem in it and exit 2.

    ``daemon``: for the commands that open (and may create) the store, whose directory
    must then exist.
    """
    try:
        return config_mod.load(
            config_mod.resolve_path(config_path),
            directory_exists=os.path.isdir if daemon else None,
        )
    except ConfigError as exc:
        fail_config(exc)
        raise AssertionError("unreachable") from None


def guarded(func: F) -> F:
    """Turn poller's own errors into one line and an exit status."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            fail_config(exc)
        except StoreError as exc:
            fail(f"store error: {exc}", EXIT_USAGE)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except PollerError as exc:
            fail(str(exc))

    return wrapper  # type: ignore[return-value]


def setup_logging(config: config_mod.Config) -> None:
    from poller.app import secrets_of

    logs.configure(level=config.log.level, fmt=config.log.format, secrets=secrets_of(config))


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` on uvloop where it is installed (faster sockets), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def install_stop(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poller")
def main() -> None:
    """poller: Mistral AI batch jobs, fine-tuning jobs, files and models as webhook events."""


# -- the daemon ----------------------------------------------------------------------------


@main.command()
@config_option
@guarded
def run(config_path: str | None) -> None:
    """Run the daemon: poll every source, deliver every event, until SIGTERM (SIGHUP reloads)."""
    config = load_config(config_path, daemon=True)
    setup_logging(config)
    run_async(_run(config))


async def _run(config: config_mod.Config) -> None:
    from poller import daemon

    stop = asyncio.Event()
    install_stop(stop)
    hangup = asyncio.Event()  # SIGHUP: reload the config file
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, hangup.set)
    await daemon.run(config, stop, hangup=hangup)


@main.command()
@config_option
@json_option
@guarded
def once(config_path: str | None, as_json: bool) -> None:
    """Poll every source once, deliver what is due, exit (for cron and tests).

    Exits 1 when any poll failed. The summary goes to standard error, or as JSON
    (``--json``) to standard output after everything the sinks wrote there.
    """
    config = load_config(config_path, daemon=True)
    setup_logging(config)
    outcomes = run_async(_once(config))
    rows = [once_row(o) for o in outcomes]
    if as_json:
        click.echo(render.to_json(rows))
    else:
        columns = ["workspace", "source", "outcome", "mode", "events", "requests", "error"]
        click.echo(render.table(rows, columns), err=True)
    failed = [f"{o.workspace}/{o.source}" for o in outcomes if o.failed]
    if failed:
        fail(f"{len(failed)} poll(s) failed: {', '.join(failed)}")


def once_row(outcome: SourceOutcome) -> dict[str, Any]:
    """One source's line of the ``poller once`` summary."""
    report = outcome.report
    return {
        "workspace": outcome.workspace,
        "source": outcome.source,
        "outcome": "error" if outcome.failed else "disabled" if outcome.disabled else "ok",
        "mode": report.mode if report else None,
        "events": len(report.events) if report else 0,
        "requests": report.requests if report else None,
        "error": outcome.error or outcome.disabled,
    }


async def _once(config: config_mod.Config) -> list[SourceOutcome]:
    from poller.app import App
    from poller.runner import Runner

    async with App(config) as app:
        return await Runner(app).once()


@main.command("check-config")
@config_option
def check_config(config_path: str | None) -> None:
    """Validate the config file; exit 2 with one line per problem."""
    path = config_mod.resolve_path(config_path)
    config = load_config(config_path, daemon=True)
    workspaces = ", ".join(
        f"{ws.name} ({'+'.join(ws.sources.enabled()) or 'no sources'})" for ws in config.workspaces
    )
    sinks = ", ".join(f"{s.name} ({s.type})" for s in config.sinks)
    click.echo(f"{path}: ok — workspaces: {workspaces}; sinks: {sinks}")


@main.group("config")
def config_group() -> None:
    """Config file helpers."""


@config_group.command("schema")
def config_schema() -> None:
    """Print the config file's JSON Schema (for editors and CI linting)."""
    click.echo(json.dumps(config_mod.json_schema(), indent=2))


# -- the simulator and the demo --------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--api-key", envvar="SIMULATOR_API_KEY", default=None, help="Require this key.")
@click.option(
    "--fine-tuning/--no-fine-tuning",
    default=True,
    show_default=True,
    help="Serve /v1/fine_tuning (it answers 404 when off, as deprecated upstream).",
)
@click.option(
    "--activity/--no-activity",
    default=False,
    show_default=True,
    help="Generate jobs, files and models on its own.",
)
@click.option(
    "--scenario", type=click.Choice(["empty", "demo"]), default="empty", show_default=True
)
@click.option("--seed", type=int, default=None, help="Seed of its random choices.")
def simulate(
    host: str,
    port: int,
    api_key: str | None,
    fine_tuning: bool,
    activity: bool,
    scenario: str,
    seed: int | None,
) -> None:
    """Serve the built-in Mistral API simulator (list/get endpoints, lifecycles, faults)."""
    from poller.simulator import Simulator

    logs.configure(level="info", secrets=[api_key] if api_key else [])
    sim = Simulator(
        api_key=api_key,
        fine_tuning=fine_tuning,
        activity=activity,
        scenario=None if scenario == "empty" else scenario,
        seed=seed,
    )
    click.echo(f"simulator: http://{host}:{port}/v1 (control API under /_sim)", err=True)
    run_async(_simulate(sim, host, port))


async def _simulate(sim: Any, host: str, port: int) -> None:
    from poller.simulator import serve

    stop = asyncio.Event()
    install_stop(stop)
    await serve(sim, host, port, stop=stop)


def demo_config(base_url: str, store_url: str) -> config_mod.Config:
    """The embedded demo configuration: the simulator, SQLite, the log sink, no API key."""
    return config_mod.from_mapping(
        {
            "mistral": {"base_url": base_url},
            "store": {"url": store_url},
            "poll": {"interval": "2s", "active_interval": "1s", "reconcile_interval": "1m"},
            "sinks": [{"name": "console", "type": "log"}],
            "log": {"level": "info"},
        },
        source="<demo>",
    )


@main.command()
@click.option(
    "--store",
    "store_path",
    default=None,
    metavar="PATH",
    help="SQLite file to keep (default: a fresh temporary one).",
)
@click.option(
    "--duration",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds (default: run until Ctrl-C).",
)
def demo(store_path: str | None, duration: float | None) -> None:
    """The simulator and the daemon together: events appear on stdout within seconds."""
    run_async(_demo(store_path, duration))


async def _demo(store_path: str | None, duration: float | None) -> None:
    from poller.app import App
    from poller.runner import Runner
    from poller.simulator import Simulator, bind, serve

    sock = bind("127.0.0.1", 0)  # a free port, held from the start
    port = sock.getsockname()[1]
    sim = Simulator(activity=True, scenario="demo")
    stop = asyncio.Event()
    install_stop(stop)
    ready = asyncio.Event()
    server = asyncio.create_task(serve(sim, ready=ready, stop=stop, sock=sock))
    await ready.wait()
    with tempfile.TemporaryDirectory(prefix="poller-demo-") as tmp:
        path = store_path or f"{tmp}/demo.db"
        # the demo picks its store's place, so it makes the directory (the daemon never does)
        pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
        config = demo_config(f"http://127.0.0.1:{port}/v1", f"sqlite:///{path}")
        setup_logging(config)
        click.echo(
            f"poller demo: simulator at http://127.0.0.1:{port}/v1, store {path}. "
            "Events print below as JSON lines (Ctrl-C to stop).",
            err=True,
        )
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)
        async with App(config) as app:
            await Runner(app).run(stop, grace=2.0)
    await server


# -- operator commands -----------------------------------------------------------------


@contextlib.contextmanager
def opened_store(config: config_mod.Config) -> Iterator[tuple[Any, Any]]:
    """(Store, Outbox) over the daemon's store, for an operator command; closed afterwards."""
    from poller import store

    engine = store.create_engine(config.store.url, create=False)
    try:
        yield store.Store(engine, lambda _e: []), store.Outbox(engine)
    finally:
        engine.dispose()


@main.command()
@config_option
@json_option
@guarded
def status(config_path: str | None, as_json: bool) -> None:
    """Sources and sinks at a glance, read from the store (works while the daemon runs)."""
    from poller import status as status_mod

    config = load_config(config_path)
    with opened_store(config) as (store, outbox):
        report = status_mod.gather(config, store, outbox)
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


@main.group()
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
    config = load_config(config_path)
    with opened_store(config) as (_store, outbox):
        rows = outbox.list_deliveries(status=status, sink=sink, event_type=event_type, limit=limit)
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
    config = load_config(config_path)
    with opened_store(config) as (_store, outbox):
        detail = outbox.event_detail(event_id)
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


def parse_time(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            return utils.utcnow() - dt.timedelta(seconds=utils.parse_duration(value))
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is neither a time (2026-11-27T10:00:00Z) nor an age (30m, 2h)"
            ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


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

    config = load_config(config_path)
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
        click.echo(dumps(event.envelope()).decode() if as_json else tail.line(event))

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
    config = load_config(config_path)
    if sink is not None:
        known_sink(config, sink)
    with opened_store(config) as (_store, outbox):
        if event_ids:
            unknown = sorted(set(event_ids) - outbox.known_event_ids(list(event_ids)))
            if unknown:
                fail(f"no event with id {', '.join(unknown)}; nothing was queued")
        count = outbox.replay(
            utils.utcnow(),
            ids=list(event_ids),
            since=parse_time(since),
            until=parse_time(until),
            sink=sink,
        )
    click.echo(f"queued {count} deliver{'y' if count == 1 else 'ies'}")


def known_sink(config: config_mod.Config, name: str) -> None:
    """Exit 2 unless ``name`` is a sink of the config file."""
    if name not in {s.name for s in config.sinks}:
        fail(f"no sink named {name!r} in {config.source}", EXIT_USAGE)


@main.group()
def sinks() -> None:
    """Inspect, test and re-enable sinks."""


@sinks.command("list")
@config_option
@json_option
@guarded
def sinks_list(config_path: str | None, as_json: bool) -> None:
    """Every sink with its state and outbox figures."""
    from poller import status as status_mod

    config = load_config(config_path)
    with opened_store(config) as (store, outbox):
        rows = status_mod.gather(config, store, outbox)["sinks"]
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

    config = load_config(config_path)
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

    config = load_config(config_path)
    known_sink(config, name)
    with opened_store(config) as (_store, outbox):
        state = outbox.sink_state(name)
        outbox.save_sink_state(
            dataclasses.replace(
                state, enabled=True, disabled_reason=None, failing_since=None, next_probe_at=None
            )
        )
        # what waited on the sink's failure goes now, as when its circuit closes by itself
        released = outbox.release(name, utils.utcnow())
    click.echo(
        f"sink {name} enabled; {released} waiting deliver{'y' if released == 1 else 'ies'} due now"
    )


@main.group()
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

    config = load_config(config_path)
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

    config = load_config(config_path)
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


from poller.cli_action import action  # noqa: E402  (it builds on the helpers above)

main.add_command(action)
