"""The ``poller`` command: parse, call, print. Logic lives in the modules it calls.

One module per command group; each builds on ``common`` and is registered here.
"""

from __future__ import annotations

import atexit
import gc

import click

from poller import __version__
from poller.cli import action, config, daemon, db, events, sim, sinks, status


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poller")
def main() -> None:
    """poller: Mistral AI batch jobs, fine-tuning jobs, files and models as webhook events."""
    # What is left when a command ends goes with the process: the collector's last passes over
    # every object at interpreter exit would only keep it alive longer (bench/shutdown.py)
    atexit.register(gc.freeze)


for command in (
    daemon.run,
    daemon.once,
    config.check_config,
    config.config_group,
    sim.simulate,
    sim.demo,
    status.status,
    events.events,
    sinks.sinks,
    db.db,
    action.action,
):
    main.add_command(command)
