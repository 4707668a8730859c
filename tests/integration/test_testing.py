"""The helpers ``poller.testing`` ships for poller's tests and its users' own."""

from __future__ import annotations

import threading

from poller.testing import WebhookReceiver


def test_a_receiver_never_entered_closes_at_once() -> None:
    """close() on a receiver that was never started returns and frees its port."""
    receiver = WebhookReceiver()
    closer = threading.Thread(target=receiver.close, daemon=True)
    closer.start()
    closer.join(timeout=2)
    assert not closer.is_alive()
    assert receiver._server.socket.fileno() == -1
