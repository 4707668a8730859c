"""Self-generated traffic for ``poller demo``: what happens on each activity tick.

Ticks come every ``every`` seconds of simulator time. Each tick starts a batch job
and does at most a couple of other things; a cycle of seven ticks holds every kind
of change once (each batch outcome, a cancelled batch job, a file upload and
deletion, fine-tuning jobs that succeed, fail, fail validation and are cancelled,
a model deletion) so that a poller sees every event type within about 30 seconds.
The order of the batch outcomes inside a cycle is drawn at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

CYCLE = 7
DEFAULT_EVERY = 4.0


@dataclass(frozen=True)
class Action:
    """One thing the simulator does on a tick; ``outcome`` for the jobs it creates."""

    name: str
    outcome: str | None = None


# besides its batch job, what each tick of a cycle does; tick 2 cancels the batch job
# of tick 1, tick 6 the fine-tuning job of tick 5 and deletes the model of tick 0's job
_EXTRAS: tuple[tuple[Action, ...], ...] = (
    (Action("upload_file"), Action("fine_tuning_job", "SUCCESS")),
    (Action("fine_tuning_job", "FAILED"),),
    (Action("cancel_batch_job"),),
    (Action("delete_file"),),
    (Action("upload_file"), Action("fine_tuning_job", "FAILED_VALIDATION")),
    (Action("fine_tuning_job", "SUCCESS"),),
    (Action("cancel_fine_tuning_job"), Action("delete_model")),
)


def plan_cycle(rng: random.Random) -> list[list[Action]]:
    """The actions of each tick of one cycle, in the order they are done."""
    outcomes = ["SUCCESS"] * CYCLE
    # not tick 1 (its job gets cancelled), nor so late that the cycle ends before they do
    failed, timed_out = rng.sample([0, 2, 3, 4], 2)
    outcomes[failed] = "FAILED"
    outcomes[timed_out] = "TIMEOUT_EXCEEDED"
    # the extras come first so that a cancellation picks an older job, not the new one
    return [[*extras, Action("batch_job", outcomes[i])] for i, extras in enumerate(_EXTRAS)]


@dataclass
class Activity:
    """Where the activity stands: on or off, its cadence and the next tick."""

    enabled: bool = False
    every: float = DEFAULT_EVERY
    anchor: float = 0.0
    ticks: int = 0
    plan: list[list[Action]] | None = None

    def restart(self, now: float) -> None:
        """Count ticks from ``now`` (the first tick is due at once)."""
        self.anchor = now
        self.ticks = 0
        self.plan = None

    def next_tick(self) -> float | None:
        return self.anchor + self.every * self.ticks if self.enabled else None

    def as_dict(self) -> dict[str, object]:
        return {"enabled": self.enabled, "every": self.every, "next_tick": self.next_tick()}
