"""The one event builder of the synchronous triggers, and the stream side parser."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poller import catalog, synchronous
from poller.proxy import stream

T = dt.datetime(2026, 11, 27, 10, 0, tzinfo=dt.UTC)
USAGE = {"prompt_tokens": 4, "completion_tokens": 3, "total_tokens": 7}


def completion(content: Any = "Hi there.", finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "model": "mistral-small-latest",
        "created": 1_790_000_000,
        "usage": USAGE,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish}],
    }  # fmt: skip


def call(path: str, answer: Any, **kw: Any) -> synchronous.Call:
    body = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
    fields: dict[str, Any] = {
        "method": "POST",
        "path": path,
        "request_body": b'{"model": "m"}',
        "status": 200,
        "content_type": "application/json",
        "content_encoding": None,
        "body": body,
        "started_at": T,
        "finished_at": T + dt.timedelta(seconds=1),
    }
    return synchronous.Call(**(fields | kw))


def sse(*chunks: Any, done: bool = True) -> bytes:
    text = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


STREAM = (
    {"id": "cmpl-9", "object": "chat.completion.chunk", "created": 5, "model": "m",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                  "finish_reason": None}]},
    {"id": "cmpl-9", "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"},
                                                "finish_reason": None}]},
    {"id": "cmpl-9", "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"},
                                                "finish_reason": None}]},
    {"id": "cmpl-9", "model": "m", "choices": [{"index": 0, "delta": {"content": ""},
                                                "finish_reason": "length"}], "usage": USAGE},
)  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [("POST", "/chat/completions", "chat_completion.created"),
     ("POST", "/fim/completions/", "fim_completion.created"),
     ("POST", "/embeddings?x=1", "embeddings.generated"),
     ("POST", "agents/completions", "agent_completion.created"),
     ("post", "/ocr", "ocr.completed"),
     ("GET", "/chat/completions", None),
     ("POST", "/models", None),
     ("POST", "/chat/completions/extra", None)],
)  # fmt: skip
def test_trigger_of_each_endpoint(method: str, path: str, expected: str | None) -> None:
    """Only a POST to one of the five endpoints records a trigger."""
    assert synchronous.trigger(method, path) == expected


@pytest.mark.parametrize(
    ("path", "answer", "data"),
    [("/chat/completions", completion(),
      {"id": "cmpl-1", "model": "mistral-small-latest", "content": "Hi there.",
       "usage_total_tokens": 7, "finish_reason": "stop"}),
     ("/agents/completions", completion([{"type": "text", "text": "A"},
                                         {"type": "text", "text": "B"}]),
      {"id": "cmpl-1", "model": "mistral-small-latest", "content": "AB",
       "usage_total_tokens": 7, "finish_reason": "stop"}),
     ("/fim/completions", completion("x + y", "length"),
      {"id": "cmpl-1", "model": "mistral-small-latest", "text": "x + y",
       "usage_completion_tokens": 3, "finish_reason": "length"}),
     ("/embeddings", {"id": "e1", "object": "list", "model": "mistral-embed", "usage": USAGE,
                      "data": [{"object": "embedding", "index": i, "embedding": [0.1] * 8}
                               for i in range(3)]},
      {"model": "mistral-embed", "object": "list", "usage_prompt_tokens": 4, "count": 3,
       "dimension": 8}),
     ("/ocr", {"model": "mistral-ocr-latest", "pages": [{"index": 0}],
               "usage_info": {"pages_processed": 1, "doc_size_bytes": 1234}},
      {"model": "mistral-ocr-latest", "pages_processed": 1, "doc_size_bytes": 1234})],
)  # fmt: skip
def test_payload_has_the_seed_fields(path: str, answer: Any, data: dict[str, Any]) -> None:
    """Each endpoint's answer gives its event the seed's fields, with the API's values."""
    (event,) = synchronous.events(call(path, answer), workspace="w").events
    assert dict(event.data) == data
    assert event.type == synchronous.ENDPOINTS[path]
    assert event.timestamp == T + dt.timedelta(seconds=1)


def test_embedding_vectors_never_reach_the_event() -> None:
    """An embeddings event holds the count and dimension, never a vector value."""
    answer = {"id": "e", "object": "list", "model": "m", "usage": USAGE,
              "data": [{"embedding": [0.123456] * 4, "index": 0}]}  # fmt: skip
    (event,) = synchronous.events(call("/embeddings", answer), workspace="w").events
    assert "0.123456" not in json.dumps(event.envelope())


@pytest.mark.parametrize("path", ["/chat/completions", "/fim/completions", "/agents/completions"])
def test_record_content_false_leaves_text_null(path: str) -> None:
    """Without record_content the generated text is null and appears nowhere in the event."""
    outcome = synchronous.events(call(path, completion("secret plan")), workspace="w",
                                 record_content=False)  # fmt: skip
    (event,) = outcome.events
    assert "secret plan" not in json.dumps(event.envelope())
    assert (
        event.data.get(
            "content",
            event.data.get("text"),
        )
        is None
    )


def test_event_id_is_stable_per_response_id() -> None:
    """The same answer recorded twice has one id; another answer, another id."""
    first = synchronous.events(call("/chat/completions", completion()), workspace="w").events
    again = synchronous.events(call("/chat/completions", completion()), workspace="w").events
    other = completion() | {"id": "cmpl-2"}
    third = synchronous.events(call("/chat/completions", other), workspace="w").events
    assert first[0].id == again[0].id == catalog.event_id("w", "chat_completion.created", "cmpl-1")
    assert third[0].id != first[0].id


def test_ocr_id_is_made_stable_and_distinct_per_call() -> None:
    """OCR answers have no id: the same observed call gets one id, a later call another."""
    answer = {"model": "mistral-ocr-latest", "pages": [],
              "usage_info": {"pages_processed": 1, "doc_size_bytes": 9}}  # fmt: skip
    one = synchronous.events(call("/ocr", answer), workspace="w").events[0]
    same = synchronous.events(call("/ocr", answer), workspace="w").events[0]
    later = call("/ocr", answer, started_at=T + dt.timedelta(seconds=5))
    other = synchronous.events(later, workspace="w").events[0]
    assert one.id == same.id != other.id
    assert one.resource_id.startswith("ocr_")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [({"status": 400}, "HTTP 400"),
     ({"body": b"<html>"}, "the answer is not JSON"),
     ({"body": b"[1]"}, "the answer is not a JSON object"),
     ({"body": sse(*STREAM, done=False), "content_type": "text/event-stream"},
      "the stream ended without data: [DONE]"),
     ({"method": "GET"}, "not a recorded endpoint")],
)  # fmt: skip
def test_calls_that_record_nothing_say_why(changes: dict[str, Any], reason: str) -> None:
    """Errors, unusable answers and unrecorded calls give no event and a reason."""
    outcome = synchronous.events(call("/chat/completions", completion(), **changes), workspace="w")
    assert outcome.events == () and outcome.skipped == reason


def test_streamed_answer_gives_the_same_event_fields() -> None:
    """A streamed completion is assembled: content, finish reason and the last chunk's usage."""
    streamed = call("/chat/completions", sse(*STREAM), content_type="text/event-stream")
    (event,) = synchronous.events(streamed, workspace="w").events
    assert dict(event.data) == {"id": "cmpl-9", "model": "m", "content": "Hello",
                                "usage_total_tokens": 7, "finish_reason": "length"}  # fmt: skip


def test_gzip_answer_is_decoded() -> None:
    """A gzip-encoded answer is read through its encoding."""
    body = gzip.compress(json.dumps(completion()).encode())
    gz = call("/chat/completions", body, content_encoding="gzip")
    assert synchronous.events(gz, workspace="w").events[0].data["content"] == "Hi there."


@given(cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
       crlf=st.booleans())  # fmt: skip
def test_assembler_reads_any_split_alike(cuts: list[int], crlf: bool) -> None:
    """However the stream is cut into pieces (and whatever its line ends), it assembles alike."""
    body = sse(*STREAM)
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    assembler = stream.Assembler()
    start = 0
    payloads: list[str] = []
    for cut in sorted({min(c, len(body)) for c in cuts}):
        payloads += assembler.feed(body[start:cut])
        start = cut
    payloads += assembler.feed(body[start:])
    payloads += assembler.close()
    assert payloads[-1] == "[DONE]" and len(payloads) == len(STREAM) + 1
    assert assembler.result() == stream.assemble(sse(*STREAM))


def test_assembler_without_content_keeps_the_rest() -> None:
    """keep_content=False assembles id, usage and finish reason but no text."""
    answer = stream.assemble(sse(*STREAM), keep_content=False)
    assert answer is not None
    assert answer["choices"][0]["message"]["content"] is None
    assert answer["usage"] == USAGE and answer["choices"][0]["finish_reason"] == "length"


def test_assembler_result_waits_for_done() -> None:
    """No result before data: [DONE]."""
    assembler = stream.Assembler()
    assembler.feed(sse(*STREAM, done=False))
    assert assembler.result() is None
    assembler.feed(b"data: [DONE]\n\n")
    assert assembler.result() is not None


@pytest.mark.parametrize("choices", [5, True, None, "x", {"index": 0}])
def test_a_stream_chunk_with_odd_choices_is_skipped(choices: Any) -> None:
    """A chunk whose choices are not a list adds nothing; the rest still assembles."""
    odd = {"id": "cmpl-9", "model": "m", "choices": choices}
    answer = stream.assemble(sse(STREAM[0], odd, *STREAM[1:]))
    assert answer == stream.assemble(sse(*STREAM))
