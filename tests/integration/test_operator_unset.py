"""Operator commands need only the variables they use; the daemon's commands need them all."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from poller import store as store_mod
from poller.cli import main
from poller.model import Event

from .test_operator_cli import record_event

UNSET = ("POLLER_T_API_KEY", "POLLER_T_HOOK_URL", "POLLER_T_HOOK_SECRET", "POLLER_T_TOKEN")
WARNING = (
    "poller: warning: POLLER_T_API_KEY, POLLER_T_HOOK_URL, POLLER_T_HOOK_SECRET, POLLER_T_TOKEN "
    "are not set; left out mistral.api_key, sink 'hook', proxy, which `{command}` does not use"
)


@pytest.fixture
def engine(tmp_path: pathlib.Path) -> Iterator[sa.Engine]:
    engine = store_mod.create_engine(f"sqlite:///{tmp_path}/p.db")
    yield engine
    engine.dispose()


@pytest.fixture
def path(tmp_path: pathlib.Path) -> str:
    """A daemon's config whose API key, webhook and proxy token come from variables."""
    text = (
        "mistral:\n  api_key: ${POLLER_T_API_KEY}\n"
        f"store:\n  url: sqlite:///{tmp_path}/p.db\n"
        "sinks:\n"
        "  - name: hook\n    type: http\n    url: ${POLLER_T_HOOK_URL}\n"
        "    secret: ${POLLER_T_HOOK_SECRET}\n"
        "  - name: console\n    type: log\n"
        "proxy:\n  inject_key: true\n  token: ${POLLER_T_TOKEN}\n"
    )
    config = tmp_path / "p.yaml"
    config.write_text(text)
    return str(config)


@pytest.fixture
def event(engine: sa.Engine) -> Event:
    return record_event(engine, ("hook",))


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=dict.fromkeys(UNSET), prog_name="poller")


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["events", "list"],
        ["events", "show", "{event}"],
        ["events", "replay", "{event}", "--sink", "hook"],
        ["sinks", "list"],
        ["sinks", "enable", "hook"],
        ["sinks", "test", "console"],
        ["db", "current"],
        ["db", "upgrade"],
    ],
    ids=lambda c: " ".join(c),
)
def test_operator_command_runs_with_a_warning(path: str, event: Event, command: list[str]) -> None:
    """An unset variable in a part the command does not read leaves that part out and is
    one warning line naming the variables and the parts; the command does its work."""
    words = [word.format(event=event.id) for word in command]
    result = invoke(*words, "--config", path)
    assert result.exit_code == 0, result.output
    named = " ".join(command[:1] if command[0] == "status" else command[:2])
    assert result.stderr.splitlines() == [WARNING.format(command=f"poller {named}")]


def test_the_sink_a_command_reads_needs_its_variables(path: str, event: Event) -> None:
    """`sinks test hook` reads that sink: its unset variables stop it, the others do not."""
    result = invoke("sinks", "test", "hook", "--config", path)
    assert result.exit_code == 2
    assert [line.split(": ", 2)[1:] for line in result.stderr.splitlines()] == [
        [
            "sinks[0].url",
            "environment variable POLLER_T_HOOK_URL is not set; "
            "export it or write the value in the file",
        ],
        [
            "sinks[0].secret",
            "environment variable POLLER_T_HOOK_SECRET is not set; "
            "export it or write the value in the file",
        ],
    ]


def test_an_unset_store_url_stops_an_operator_command(tmp_path: pathlib.Path) -> None:
    """The store is what every operator command reads: an unset store.url is an error."""
    config = tmp_path / "p.yaml"
    config.write_text("store:\n  url: ${POLLER_T_STORE}\n")
    result = CliRunner().invoke(
        main, ["status", "--config", str(config)], env={"POLLER_T_STORE": None}
    )
    assert result.exit_code == 2
    assert result.stderr == (
        f"{config}:2: store.url: environment variable POLLER_T_STORE is not set; "
        "export it or write the value in the file\n"
    )


@pytest.mark.parametrize("command", [["check-config"], ["once"], ["run"]], ids=" ".join)
def test_daemon_commands_stay_strict(path: str, command: list[str]) -> None:
    """`run`, `once` and `check-config` refuse the config while any variable is unset."""
    result = invoke(*command, "--config", path)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == len(UNSET)
    assert all("is not set" in line for line in result.stderr.splitlines())
