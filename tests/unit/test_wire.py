"""What receivers depend on, pinned with literal values: event ids, a signature, the envelope.

A receiver deduplicates on the event id and verifies the signature; if an upgrade changed
how either is computed, every event would arrive again under a new id or fail
verification. These values are written out, not recomputed, so such a change fails here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from poller import synchronous
from poller.delivery import signing
from poller.diff import diff
from poller.model import Event
from poller.sinks.base import cloudevent, dumps
from poller.sources import BATCH_JOBS, FILES, FINE_TUNING_JOBS, MODELS, SourceSpec

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
CREATED = 1_764_000_000


def _batch(status: str) -> dict[str, Any]:
    return {
        "id": "b7f1c2d3-0000-4000-8000-000000000001",
        "object": "batch",
        "status": status,
        "created_at": CREATED,
        "model": "mistral-small-latest",
        "total_requests": 3,
        "output_file": None,
        "error_file": None,
        "input_files": ["f"],
        "errors": [],
    }


def _job(status: str) -> dict[str, Any]:
    return {
        "id": "ft-0000-4000-8000-000000000002",
        "object": "job",
        "status": status,
        "created_at": CREATED,
        "model": "open-mistral-7b",
        "fine_tuned_model": None,
        "trained_tokens": None,
    }


FILE = {
    "id": "file-0000-4000-8000-000000000003",
    "object": "file",
    "bytes": 512,
    "created_at": CREATED,
    "filename": "batch.jsonl",
    "purpose": "batch",
    "sample_type": "batch_request",
    "source": "upload",
}
MODEL = {
    "id": "ft:open-mistral-7b:abc:20261127:def",
    "object": "model",
    "type": "fine-tuned",
    "created": CREATED,
    "owned_by": "org-1",
    "root": "open-mistral-7b",
    "job": "j1",
    "capabilities": {},
}


def _polled(spec: SourceSpec, obj: dict[str, Any], workspace: str, *, gone: bool) -> list[Event]:
    """The events of ``obj`` seen for the first time, or of its confirmed deletion."""
    resource = spec.to_resource(obj)
    if gone:
        before = {resource.id: resource}
        return list(diff(spec, before, [], gone=[resource.id], workspace=workspace, now=NOW).events)
    return list(diff(spec, {}, [resource], workspace=workspace, now=NOW).events)


POLLED = [
    (BATCH_JOBS, _batch("QUEUED"), False, "default", "batch_job.created",
     "evt_nwjihtjdjgiezba36erm4ogmay"),
    (BATCH_JOBS, _batch("SUCCESS"), False, "default", "batch_job.succeeded",
     "evt_jvgp63lfuokloqrai6b4og2mbi"),
    (BATCH_JOBS, _batch("FAILED"), False, "default", "batch_job.failed",
     "evt_gfsbiz6e7aptuutj2esathvwe4"),
    (BATCH_JOBS, _batch("CANCELLED"), False, "default", "batch_job.cancelled",
     "evt_ep6ndd3l72kh2kkjk54jhqnxli"),
    (FINE_TUNING_JOBS, _job("QUEUED"), False, "default", "fine_tuning_job.created",
     "evt_pipd5bx5dtbxefuwsbkrzugvla"),
    (FINE_TUNING_JOBS, _job("SUCCESS"), False, "default", "fine_tuning_job.succeeded",
     "evt_gwvnl4b6kioswzq5yryyvlh4y4"),
    (FINE_TUNING_JOBS, _job("FAILED"), False, "default", "fine_tuning_job.failed",
     "evt_az3qrl3l2uks5knsn6uskafe2u"),
    (FINE_TUNING_JOBS, _job("CANCELLED"), False, "default", "fine_tuning_job.cancelled",
     "evt_rahp46rh4ng3euqr7auhmyldfm"),
    (FILES, FILE, False, "default", "file.uploaded", "evt_fzwz5yikdskuckoqurhfcqvryi"),
    (FILES, FILE, True, "default", "file.deleted", "evt_y4b6js3qbcikudrjruvlne4zcm"),
    (MODELS, MODEL, False, "default", "model.created", "evt_u3ssh3tpy4l2zvtpogwdekouxm"),
    (MODELS, MODEL, True, "default", "model.deleted", "evt_rfj47agiqsuv5xfaxw6inzonme"),
    (BATCH_JOBS, _batch("SUCCESS"), False, "prod", "batch_job.created",
     "evt_kovqjelzzzrswsbiuuevm3dz2u"),
    (BATCH_JOBS, _batch("SUCCESS"), False, "prod", "batch_job.succeeded",
     "evt_dkuuhjfw4nd5nu7kkwlm6z2ya4"),
    (FINE_TUNING_JOBS, _job("FAILED"), False, "prod", "fine_tuning_job.failed",
     "evt_6whkzp6u24zc6y4eklfjqkp2pm"),
    (FILES, FILE, True, "prod", "file.deleted", "evt_dd4qc6dm5dpmr7ydwajdc4gnqi"),
    (MODELS, MODEL, False, "prod", "model.created", "evt_ftzf7dtqqocdfkl73rxmmll2te"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "obj", "gone", "workspace", "event_type", "expected"), POLLED)
def test_polled_event_ids_are_pinned(
    spec: SourceSpec,
    obj: dict[str, Any],
    gone: bool,
    workspace: str,
    event_type: str,
    expected: str,
) -> None:
    """Each polled event type has the same id for the same transition in every release."""
    events = {e.type: e.id for e in _polled(spec, obj, workspace, gone=gone)}
    assert events[event_type] == expected


USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}
COMPLETION = {
    "object": "chat.completion",
    "model": "mistral-small-latest",
    "created": CREATED,
    "usage": USAGE,
    "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hi."}}
    ],
}
SYNC_ANSWERS: dict[str, dict[str, Any]] = {
    "/chat/completions": COMPLETION | {"id": "cmpl-0001"},
    "/fim/completions": COMPLETION | {"id": "cmpl-0002", "model": "codestral-latest"},
    "/agents/completions": COMPLETION | {"id": "cmpl-0003"},
    "/embeddings": {
        "id": "emb-0004",
        "object": "list",
        "model": "mistral-embed",
        "usage": USAGE,
        "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
    },
    "/ocr": {
        "model": "mistral-ocr-latest",
        "pages": [],
        "usage_info": {"pages_processed": 1, "doc_size_bytes": 9},
    },
}


def _call(path: str, answer: dict[str, Any]) -> synchronous.Call:
    return synchronous.Call(
        method="POST",
        path=path,
        request_body=b'{"model": "m"}',
        status=200,
        content_type="application/json",
        content_encoding=None,
        body=json.dumps(answer).encode(),
        started_at=NOW,
        finished_at=NOW + dt.timedelta(seconds=1),
    )


SYNCHRONOUS = [
    ("/chat/completions", "default", "evt_w32hnxztxwmecmxeem2ybms4xq"),
    ("/fim/completions", "default", "evt_p54le7h2apnalgaspo2yw6mc4u"),
    ("/agents/completions", "default", "evt_lt6ezoy6un544lrn7aly4kcp24"),
    ("/embeddings", "default", "evt_cprtd6qyjvnhgn2u7ur2c7tndy"),
    ("/ocr", "default", "evt_bfhxggxolkkd6p6ayyyekl23yy"),
    ("/chat/completions", "prod", "evt_pkd36a5cqvcw3py4ybwfht2dti"),
    ("/fim/completions", "prod", "evt_vkhwlm4pybvd5pgfn322uuu3ra"),
    ("/agents/completions", "prod", "evt_cuic624jr6x7uqlmr2lveig4wy"),
    ("/embeddings", "prod", "evt_zq35ooehydl6yyicjhc73a5nfe"),
    ("/ocr", "prod", "evt_5pgqedjacx45pi3msbxccges3m"),
]


@pytest.mark.parametrize(("path", "workspace", "expected"), SYNCHRONOUS)
def test_synchronous_event_ids_are_pinned(path: str, workspace: str, expected: str) -> None:
    """Each synchronous trigger (OCR's made-up id included) keeps its event id across releases."""
    (event,) = synchronous.events(_call(path, SYNC_ANSWERS[path]), workspace=workspace).events
    assert event.id == expected


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
BODY = b'{"id":"evt_nwjihtjdjgiezba36erm4ogmay","type":"batch_job.created"}'
OTHER_SECRET = "whsec_YmJiYmJiYmJiYmJiYmJiYmJiYmJiYmJi"


def test_signature_is_pinned() -> None:
    """A fixed secret, id, timestamp and body give this Standard Webhooks signature."""
    sent = signing.sign(SECRET, "evt_nwjihtjdjgiezba36erm4ogmay", 1_764_244_800, BODY)
    assert sent == "v1,Av9Kp/Hc82grvdwvrHa23L6sPTpGnFfHMtHT9/tn56U="


def test_signature_headers_are_pinned() -> None:
    """The three webhook-* headers, with one signature per secret while secrets rotate."""
    headers = signing.headers(
        [SECRET, OTHER_SECRET], "evt_nwjihtjdjgiezba36erm4ogmay", 1_764_244_800, BODY
    )
    assert headers == {
        "webhook-id": "evt_nwjihtjdjgiezba36erm4ogmay",
        "webhook-timestamp": "1764244800",
        "webhook-signature": "v1,Av9Kp/Hc82grvdwvrHa23L6sPTpGnFfHMtHT9/tn56U= "
        "v1,3f0V+Sp8sEcA6omoI8e1JFuTmxLUrlNi5oVawV+cfWM=",
    }


def _succeeded() -> Event:
    (event,) = [e for e in _polled(BATCH_JOBS, _batch("SUCCESS"), "prod", gone=False)
                if e.type == "batch_job.succeeded"]  # fmt: skip
    return event


def test_envelope_bytes_are_pinned() -> None:
    """The standard envelope, byte for byte, as the http, file and log sinks write it."""
    assert dumps(_succeeded().envelope()) == (
        b'{"id":"evt_dkuuhjfw4nd5nu7kkwlm6z2ya4","type":"batch_job.succeeded",'
        b'"timestamp":"2026-11-27T12:00:00.000000Z","workspace":"prod",'
        b'"data":{"id":"b7f1c2d3-0000-4000-8000-000000000001","status":"SUCCESS",'
        b'"output_file":null,"total_requests":3}}'
    )


def test_cloudevent_bytes_are_pinned() -> None:
    """The CloudEvents form (format: cloudevents), byte for byte."""
    assert dumps(cloudevent(_succeeded())) == (
        b'{"specversion":"1.0","id":"evt_dkuuhjfw4nd5nu7kkwlm6z2ya4","source":"poller/prod",'
        b'"type":"batch_job.succeeded","subject":"b7f1c2d3-0000-4000-8000-000000000001",'
        b'"time":"2026-11-27T12:00:00.000000Z","datacontenttype":"application/json",'
        b'"data":{"id":"b7f1c2d3-0000-4000-8000-000000000001","status":"SUCCESS",'
        b'"output_file":null,"total_requests":3}}'
    )


def test_synchronous_envelope_is_pinned() -> None:
    """An OCR event (no id in the answer) as receivers get it."""
    (event,) = synchronous.events(_call("/ocr", SYNC_ANSWERS["/ocr"]), workspace="default").events
    assert json.loads(dumps(event.envelope())) == {
        "id": "evt_bfhxggxolkkd6p6ayyyekl23yy",
        "type": "ocr.completed",
        "timestamp": "2026-11-27T12:00:01.000000Z",
        "workspace": "default",
        "data": {"model": "mistral-ocr-latest", "pages_processed": 1, "doc_size_bytes": 9},
    }
