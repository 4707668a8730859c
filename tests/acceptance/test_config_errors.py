"""`poller check-config` and `poller run` refuse a bad config with one line per problem, exit 2."""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import pytest

from .conftest import poller

GOOD_SINK = "sinks:\n  - name: console\n    type: log\n"

CASES = [
    ("unknown key", "poll:\n  intervall: 30s\n", "poll.intervall", ":2:"),
    ("bad duration", "poll:\n  interval: soon\n", "poll.interval", ":2:"),
    ("negative interval", "poll:\n  interval: -5\n", "poll.interval", ":2:"),
    (
        "missing env var",
        "mistral:\n  api_key: ${POLLER_TEST_UNSET_VAR}\n",
        "POLLER_TEST_UNSET_VAR",
        ":2:",
    ),
    ("http sink without url", "sinks:\n  - name: a\n    type: http\n", "sinks[0]", ":2:"),
    (
        "http sink bad url",
        "sinks:\n  - name: a\n    type: http\n    url: ftp://x\n",
        "sinks[0].url",
        ":4:",
    ),
    ("duplicate sink", GOOD_SINK + "  - name: console\n    type: log\n", "sinks[1].name", ":4:"),
    ("unknown sink type", "sinks:\n  - name: a\n    type: kafka\n", "sinks[0].type", ":3:"),
    ("unsupported store", "store:\n  url: mysql://root@h/db\n", "store.url", ":2:"),
    ("non-mapping", "- just\n- a list\n", "mapping", ""),
    ("wrong type", "poll:\n  emit_existing: perhaps\n", "poll.emit_existing", ":2:"),
]


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize(("name", "text", "key", "line"), CASES, ids=[c[0] for c in CASES])
def test_bad_config_is_one_line_exit_2(
    write: Callable[[str], pathlib.Path], command: str, name: str, text: str, key: str, line: str
) -> None:
    """Each invalid config is refused by the command with one line naming the key, exit 2."""
    path = write(text)
    result = poller(command, "--config", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"{path}{line or ':'}"), "FILE:LINE: comes first"
    assert key in lines[0]
    assert "Traceback" not in result.stderr


def test_empty_file(write: Callable[[str], pathlib.Path]) -> None:
    """An empty file is refused with a hint at the example."""
    result = poller("check-config", "--config", str(write("")))
    assert result.returncode == 2 and "empty" in result.stderr


def test_missing_file(tmp_path: pathlib.Path) -> None:
    """A config file that does not exist says how to point at one."""
    result = poller("run", "--config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "--config" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_config_from_environment(write: Callable[[str], pathlib.Path]) -> None:
    """$POLLER_CONFIG names the file when --config is absent."""
    path = write(GOOD_SINK)
    result = poller("check-config", POLLER_CONFIG=str(path))
    assert result.returncode == 0 and "ok" in result.stdout


def test_secret_never_echoed(write: Callable[[str], pathlib.Path]) -> None:
    """A bad webhook secret is refused without printing it."""
    secret = "whsec_!!!definitely-not-base64!!!"
    text = f"sinks:\n  - name: a\n    type: http\n    url: https://h/x\n    secret: '{secret}'\n"
    result = poller("check-config", "--config", str(write(text)))
    assert result.returncode == 2 and secret not in result.stderr + result.stdout


def test_schema_command() -> None:
    """`poller config schema` prints a JSON Schema."""
    import json

    result = poller("config", "schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["$schema"].endswith("2020-12/schema")


SEVERAL = """\
mistral:
  api_key: ${POLLER_TEST_UNSET_KEY}
poll:
  intervall: 30s
  timeout: soon
sinks:
  - name: hook
    type: http
    url: https://hooks.example.com/x
    secret: ${POLLER_TEST_UNSET_SECRET}
  - name: archive
    type: file
    path: /var/log/poller/events.jsonl
    concurrency: lots
"""


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_every_problem_is_reported_at_once(
    write: Callable[[str], pathlib.Path], command: str
) -> None:
    """A config with several problems gets one line for each, in file order, and exit 2."""
    path = write(SEVERAL)
    result = poller(command, "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}:2: mistral.api_key: environment variable "
        "POLLER_TEST_UNSET_KEY is not set; export it or write the value in the file",
        f"{path}:4: poll.intervall: unknown key 'intervall'; did you mean 'interval'?",
        f"{path}:5: poll.timeout: 'soon' is not a duration; use e.g. 30, '500ms', '30s', '5m'",
        f"{path}:10: sinks[0].secret: environment variable "
        "POLLER_TEST_UNSET_SECRET is not set; export it or write the value in the file",
        f"{path}:14: sinks[1].concurrency: expected a whole number, got a string",
    ]


@pytest.mark.parametrize("command", ["check-config", "run", "once"])
def test_missing_store_directory_is_named(
    write: Callable[[str], pathlib.Path], tmp_path: pathlib.Path, command: str
) -> None:
    """A SQLite store in a directory that does not exist is refused; nothing is created."""
    missing = tmp_path / "state"
    path = write(GOOD_SINK + f"store:\n  url: sqlite:///{missing}/poller.db\n")
    result = poller(command, "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}:5: store.url: the directory {missing} does not exist; "
        f"create it (install -d -m 0700 {missing}) or change store.url"
    ]
    assert not missing.exists()


def test_default_store_directory_is_named(write: Callable[[str], pathlib.Path]) -> None:
    """Without store.url the default store's directory must exist too; the line says so."""
    path = write(GOOD_SINK)
    result = poller("check-config", "--config", str(path), STATE_DIRECTORY="/nonexistent/poller")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"{path}:1: store.url: not set, so the store is "
        "/nonexistent/poller/poller.db, but /nonexistent/poller does not exist; create it "
        "(install -d -m 0700 /nonexistent/poller) or set store.url"
    ]


STARTING = {
    "MISTRAL_API_KEY": "sk-test",
    "WEBHOOK_URL": "https://hooks.example.com/mistral",
    "WEBHOOK_SECRET": "whsec_cG9sbGVyLWRlbW8tc2VjcmV0LW9mLTMyLWJ5dGVzIQ==",
}


def test_starting_config_passes_with_its_variables_set() -> None:
    """config/poller.yaml, as README copies it, passes check-config once its variables are set."""
    result = poller("check-config", "--config", "config/poller.yaml", environ=STARTING)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config/poller.yaml: ok — workspaces: default")
    assert "sinks: webhook (http), console (log)" in result.stdout


@pytest.mark.parametrize(
    ("unset", "where"),
    [
        ("MISTRAL_API_KEY", "14: mistral.api_key"),
        ("WEBHOOK_URL", "18: sinks[0].url"),
        ("WEBHOOK_SECRET", "19: sinks[0].secret"),
    ],
)
def test_starting_config_names_a_variable_left_unset(unset: str, where: str) -> None:
    """Each variable the starting config needs, left unset, is one error line naming it."""
    given = {name: value for name, value in STARTING.items() if name != unset}
    result = poller("check-config", "--config", "config/poller.yaml", environ=given)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"config/poller.yaml:{where}: environment variable {unset} is not set; "
        "export it or write the value in the file"
    ]
