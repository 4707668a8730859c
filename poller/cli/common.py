"""What every command shares: config and JSON options, loading, one-line errors, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import click

from poller import config as config_mod
from poller import logs, utils
from poller.config import partial
from poller.exceptions import ConfigError, PollerError, StoreError, UsageError

if TYPE_CHECKING:
    from poller.store import Ledger, Outbox, SinkStates, Store

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2


def fail(message: str, code: int = 1) -> None:
    """One line on stderr, then exit: no traceback for errors a user can fix."""
    click.echo(f"poller: {message}", err=True)
    sys.exit(code)


def fail_config(exc: ConfigError) -> None:
    """One line per problem of the config on stderr, then exit 2.

    Each line starts ``FILE:LINE:`` (docs/configuration.md), as editors and CI matchers
    expect of a compiler's errors, so no prefix of poller's own comes before it.
    """
    for problem in exc.problems:
        click.echo(problem.render(), err=True)
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


def load_config(
    config_path: str | None, *, daemon: bool = False, reads: partial.Reads | None = None
) -> config_mod.Config:
    """The config, or every problem in it and exit 2.

    ``daemon``: for the commands that open (and may create) the store, whose directory
    must then exist. ``reads``: for a command that uses only part of the config (see
    ``config.partial``); what it leaves out for a variable not set is one warning line.
    """
    try:
        return config_mod.load(
            config_mod.resolve_path(config_path),
            directory_exists=os.path.isdir if daemon else None,
            reads=reads,
            on_skip=_warn_skipped,
        )
    except ConfigError as exc:
        fail_config(exc)
        raise AssertionError("unreachable") from None


def _warn_skipped(skipped: partial.Skipped) -> None:
    context = click.get_current_context(silent=True)
    command = f"`{context.command_path}`" if context else "this command"
    variables = ", ".join(skipped.variables)
    verb = "is" if len(skipped.variables) == 1 else "are"
    click.echo(
        f"poller: warning: {variables} {verb} not set; left out "
        f"{', '.join(skipped.parts)}, which {command} does not use",
        err=True,
    )


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


@dataclasses.dataclass(frozen=True)
class Opened:
    """The daemon's store as an operator command reads and changes it."""

    store: Store
    ledger: Ledger
    sink_states: SinkStates
    outbox: Outbox


@contextlib.contextmanager
def opened_store(config: config_mod.Config) -> Iterator[Opened]:
    """The daemon's store, for an operator command; closed afterwards."""
    from poller import store

    engine = store.create_engine(config.store.url, create=False)
    try:
        yield Opened(
            store.Store(engine, lambda _e: []),
            store.Ledger(engine),
            store.SinkStates(engine),
            store.Outbox(engine),
        )
    finally:
        engine.dispose()


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


def known_sink(config: config_mod.Config, name: str) -> None:
    """Exit 2 unless ``name`` is a sink of the config file."""
    if name not in {s.name for s in config.sinks}:
        fail(f"no sink named {name!r} in {config.source}", EXIT_USAGE)
