"""``poller check-config`` and ``poller config``: the config file itself."""

from __future__ import annotations

import json

import click

from poller import config as config_mod
from poller.cli.common import (
    config_option,
    load_config,
)


@click.command("check-config")
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


@click.group("config")
def config_group() -> None:
    """Config file helpers."""


@config_group.command("schema")
def config_schema() -> None:
    """Print the config file's JSON Schema (for editors and CI linting)."""
    click.echo(json.dumps(config_mod.json_schema(), indent=2))
