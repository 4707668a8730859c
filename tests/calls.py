"""Observed calls as the proxy hands them to its recorder, for the recorder's tests."""

from __future__ import annotations

import datetime as dt
import json

from poller import synchronous


def embeddings_call(answer_id: str, at: dt.datetime) -> synchronous.Call:
    """A 2xx ``POST /embeddings`` answered at ``at`` with the (empty) answer ``answer_id``."""
    answer = {"id": answer_id, "object": "list", "model": "m", "data": []}
    return synchronous.Call(
        method="POST",
        path="/embeddings",
        request_body=b"{}",
        status=200,
        content_type="application/json",
        content_encoding=None,
        body=json.dumps(answer).encode(),
        started_at=at,
        finished_at=at,
    )
