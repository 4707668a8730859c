"""poller's built-in simulator of Mistral's API (batch jobs, fine-tuning jobs, files, models).

``Simulator`` holds the state and is driven from Python. See docs/simulator.md.
"""

from __future__ import annotations

from poller.simulator.state import Simulator

__all__ = ["Simulator"]
