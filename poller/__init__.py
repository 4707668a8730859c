"""poller: turns Mistral AI's asynchronous work into signed webhook events."""

from __future__ import annotations

__version__ = "0.1.0"
