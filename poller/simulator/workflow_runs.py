"""The simulator's workflow runs as a resource family: ``/v1/workflows``.

The runs themselves live in ``workflows.Workflows`` (``self.workflows``), which keeps a lock
of its own and reads the simulator's clock; this family makes them part of the workspace:
counted, reset, kept busy by activity and seeded by the demo scenario with the rest.
"""

from __future__ import annotations

from typing import Any

from poller.simulator import activity as act
from poller.simulator import workflows
from poller.simulator.core import SimulatorCore
from poller.simulator.records import Json


class WorkflowRuns(SimulatorCore):
    """Workflow runs beside the other resources (``self.workflows`` answers their routes)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.workflows = workflows.Workflows(
            self._world.now,
            seed=options.get("seed"),
            activity=bool(options.get("activity", False)),
            every=float(options.get("activity_every", act.DEFAULT_EVERY)),
        )
        """The workflow runs (``/v1/workflows``), with a lock of their own."""
        if options.get("scenario") == "demo":
            self.workflows.demo()

    def counts(self) -> Json:
        return {**super().counts(), "workflow_runs": self.workflows.counts()}

    def reset(self) -> Json:
        done = super().reset()
        self.workflows.reset()
        return done

    def set_activity(self, enabled: bool, every: float | None = None) -> Json:
        shown = super().set_activity(enabled, every)
        self.workflows.set_activity(enabled, float(shown["every"]))
        return shown
