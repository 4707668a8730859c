"""What a reload changes live, and what waits for a restart."""

from __future__ import annotations

from typing import Any

import pytest

from poller import config as config_mod
from poller.reload import plan

HOOK = {"name": "hook", "type": "http", "url": "https://hooks.example.com/a"}
BASE: dict[str, Any] = {
    "workspaces": [{"name": "prod", "api_key": "sk-1"}],
    "store": {"url": "sqlite:////var/lib/poller/poller.db"},
    "poll": {"interval": "30s"},
    "sinks": [HOOK, {"name": "log", "type": "log"}],
}


def config(**changes: Any) -> config_mod.Config:
    return config_mod.from_mapping({**BASE, **changes})


def ws(**changes: Any) -> list[dict[str, Any]]:
    return [{"name": "prod", "api_key": "sk-1", **changes}]


def test_same_file_changes_nothing() -> None:
    """Reloading an unchanged file is a no-op."""
    result = plan(config(), config())
    assert not result.changed and result.restart == ()


@pytest.mark.parametrize(
    ("sinks", "added", "removed", "rebuilt", "refiltered"),
    [
        ([HOOK], (), ("log",), (), ()),
        ([HOOK, {"name": "log", "type": "log"}, {"name": "f", "type": "file", "path": "e"}],
         ("f",), (), (), ()),
        ([{**HOOK, "url": "https://hooks.example.com/b"}, {"name": "log", "type": "log"}],
         (), (), ("hook",), ()),
        ([{**HOOK, "events": ["file.*"]}, {"name": "log", "type": "log"}],
         (), (), (), ("hook",)),
        ([HOOK, {"name": "log", "type": "file", "path": "e"}], (), (), ("log",), ()),
        ([{**HOOK, "concurrency": 2}, {"name": "log", "type": "log", "workspaces": ["prod"]}],
         (), (), ("hook",), ("log",)),
    ],
)  # fmt: skip
def test_sinks(
    sinks: list[dict[str, Any]],
    added: tuple[str, ...],
    removed: tuple[str, ...],
    rebuilt: tuple[str, ...],
    refiltered: tuple[str, ...],
) -> None:
    """Sinks are added, removed, rebuilt on any other change, or only refiltered."""
    result = plan(config(), config(sinks=sinks))
    assert (result.added, result.removed, result.rebuilt, result.refiltered) == (
        added,
        removed,
        rebuilt,
        refiltered,
    )
    assert [s.name for s in result.config.sinks] == [s["name"] for s in sinks]
    assert result.restart == ()


def test_intervals_change_live() -> None:
    """A new interval reaches every running source of the workspace, with no restart."""
    result = plan(config(), config(poll={"interval": "10s"}))
    assert result.retuned == tuple(("prod", s) for s in config_mod.SOURCE_NAMES)
    assert result.config.workspace("prod").sources.get("files").interval == 10
    assert result.restart == ()


def test_a_source_interval_changes_only_that_source() -> None:
    """A per-source interval retunes that source alone."""
    result = plan(config(), config(sources={"models": {"interval": "1h"}}))
    assert result.retuned == (("prod", "models"),)


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"store": {"url": "sqlite:////tmp/other.db"}}, "store changed"),
        ({"ops": {"listen": "127.0.0.1:9464"}}, "ops changed"),
        ({"shutdown": {"grace_period": "1s"}}, "shutdown changed"),
        ({"workspaces": ws(api_key="sk-2")}, "workspace prod: api_key changed"),
        ({"workspaces": ws(base_url="http://127.0.0.1:1/v1", page_size=5)},
         "workspace prod: base_url, page_size changed"),
        ({"workspaces": [*ws(), {"name": "lab"}]}, "workspace lab added"),
        ({"workspaces": [{"name": "lab"}]}, "workspace prod removed"),
        ({"workspaces": ws(sources={"models": False})},
         "workspace prod: sources switched on or off"),
    ],
)  # fmt: skip
def test_what_needs_a_restart(changes: dict[str, Any], phrase: str) -> None:
    """Connections, sources on/off, store, ops, shutdown wait for a restart, keeping their value."""
    old = config()
    result = plan(old, config(**changes))
    assert phrase in result.restart
    assert result.config.store == old.store and result.config.ops == old.ops
    assert result.config.shutdown == old.shutdown
    assert [w.name for w in result.config.workspaces] == ["prod"]
    running = result.config.workspace("prod")
    assert running.api_key == old.workspace("prod").api_key
    assert running.sources.enabled() == old.workspace("prod").sources.enabled()


def test_restart_phrases_never_hold_values() -> None:
    """A changed secret is named by its key, never shown."""
    result = plan(config(), config(workspaces=ws(api_key="sk-new-secret")))
    assert not any("sk-" in phrase for phrase in result.restart)


def test_log_changes_live() -> None:
    """A new log level is applied without a restart."""
    result = plan(config(), config(log={"level": "debug"}))
    assert result.log_changed and result.config.log.level == "debug" and not result.restart
