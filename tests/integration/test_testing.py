"""The helpers ``poller.testing`` ships for poller's tests and its users' own."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from poller.testing import WebhookReceiver


def test_a_receiver_never_entered_closes_at_once() -> None:
    """close() on a receiver that was never started returns and frees its port."""
    receiver = WebhookReceiver()
    closer = threading.Thread(target=receiver.close, daemon=True)
    closer.start()
    closer.join(timeout=2)
    assert not closer.is_alive()
    assert receiver._server.socket.fileno() == -1


def _post(url: str, document: dict[str, object]) -> None:
    body = json.dumps(document).encode()
    headers = {"webhook-id": str(document["id"]), "webhook-timestamp": "1764240127"}
    httpx.post(url, content=body, headers={**headers, "content-type": "application/json"})


def test_the_receiver_fails_on_an_event_off_its_schema() -> None:
    """A received event whose payload breaks its schema fails the receiver's with block."""
    event = {
        "id": "evt_3k2qbn5pdmc4w6xsl7ayvjrt2e",
        "type": "file.uploaded",
        "timestamp": "2026-11-27T10:42:07.118000Z",
        "workspace": "default",
        "data": {"id": "f1", "filename": "a.jsonl", "purpose": "batch", "size": "12"},
    }
    with pytest.raises(AssertionError, match=r"data/size: '12' is not of type 'integer'"):
        with WebhookReceiver() as receiver:
            _post(receiver.url, event)
    with WebhookReceiver() as receiver:
        _post(receiver.url, {**event, "data": {**event["data"], "size": 12}})
    assert receiver.problems == []
    with WebhookReceiver(validate=False) as receiver:
        _post(receiver.url, event)
    assert len(receiver.requests) == 1
