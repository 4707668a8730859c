"""poller's built-in simulator of Mistral's API (batch jobs, fine-tuning jobs, files, models).

``Simulator`` holds the state and is driven from Python; ``build_app`` serves it
as ASGI; ``SimulatorServer`` runs it on 127.0.0.1 in a thread (tests, benchmarks);
``serve`` runs it inside an event loop (``poller demo``). See docs/simulator.md.
"""

from __future__ import annotations

from poller.simulator.app import build_app
from poller.simulator.server import SimulatorServer, bind, serve
from poller.simulator.state import Simulator

__all__ = ["Simulator", "SimulatorServer", "bind", "build_app", "serve"]
