"""The helpers ``poller.testing`` ships for poller's tests and its users' own."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping
from typing import Any

import httpx
import pytest

from poller import store
from poller.model import Event
from poller.store.intake import add_events
from poller.testing import WebhookReceiver, recorded_problems

T0 = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)


def test_a_receiver_never_entered_closes_at_once() -> None:
    """close() on a receiver that was never started returns and frees its port."""
    receiver = WebhookReceiver()
    closer = threading.Thread(target=receiver.close, daemon=True)
    closer.start()
    closer.join(timeout=2)
    assert not closer.is_alive()
    assert receiver._server.socket.fileno() == -1


def _post(url: str, document: Mapping[str, Any]) -> None:
    body = json.dumps(document).encode()
    headers = {"webhook-id": str(document["id"]), "webhook-timestamp": "1764240127"}
    httpx.post(url, content=body, headers={**headers, "content-type": "application/json"})


def test_the_receiver_fails_on_an_event_off_its_schema() -> None:
    """A received event whose payload breaks its schema fails the receiver's with block."""
    event: dict[str, Any] = {
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


@pytest.mark.foreign_events
def test_recorded_problems_names_an_event_off_its_schema(store_url: str) -> None:
    """recorded_problems() (the suite's after-test check) finds a recorded event off schema."""
    engine = store.create_engine(store_url)
    try:
        good = Event("evt_3k2qbn5pdmc4w6xsl7ayvjrt2e", "file.deleted", "w", "f1", T0, {"id": "f1"})
        bad = Event("evt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "file.deleted", "w", "f2", T0, {"id": 2})
        with engine.begin() as conn:
            add_events(conn, [good, bad], lambda _e: [])
        assert recorded_problems(engine) == [
            "file.deleted evt_aaaaaaaaaaaaaaaaaaaaaaaaaa: data/id: 2 is not of type 'string'"
        ]
    finally:
        engine.dispose()
