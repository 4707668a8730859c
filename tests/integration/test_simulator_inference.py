"""Conformance of the simulator's synchronous endpoints to Mistral's OpenAPI spec.

Chat, FIM and agent completions (plain and streamed), embeddings and OCR answers are
validated against their operations' schemas over real HTTP. One slip of the spec is
set aside: ``ChatCompletionResponse`` lists ``data`` as required although it is not
among its properties, and neither the API nor the official SDK has such a field.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from poller.simulator import Simulator, SimulatorServer

from .test_simulator_openapi import CURRENT, MISTRAL_ERROR, T0, _Loader, _reference_dir

CHAT = {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hello?"}]}
FIM = {"model": "codestral-latest", "prompt": "def add(a, b):", "suffix": "return c"}
AGENT = {"agent_id": "ag_0198a1", "messages": [{"role": "user", "content": "Hi"}]}


class Spec:
    """The current spec, with the ``data`` slip of ``ChatCompletionResponse`` set aside."""

    def __init__(self) -> None:
        path = _reference_dir() / CURRENT
        if not path.exists():
            pytest.skip(f"Mistral's OpenAPI reference is missing: {path}")
        with path.open() as f:
            doc: dict[str, Any] = yaml.load(f, Loader=_Loader)
        response = doc["components"]["schemas"]["ChatCompletionResponse"]["allOf"][1]
        response["required"] = [name for name in response["required"] if name != "data"]
        self.doc = doc
        resource = Resource.from_contents(doc, default_specification=DRAFT202012)
        self.registry: Registry[Any] = Registry().with_resource("urn:spec", resource)

    def validate(self, answer: Any, pointer: str) -> None:
        validator = Draft202012Validator(
            {"$ref": f"urn:spec#{pointer}"},
            registry=self.registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )
        errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])

    def response(self, answer: Any, path: str) -> None:
        escaped = path.replace("/", "~1")
        pointer = f"/paths/{escaped}/post/responses/200/content/application~1json/schema"
        self.validate(answer, pointer)


@pytest.fixture(scope="module")
def spec() -> Spec:
    return Spec()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    sim = Simulator(clock=lambda: T0, seed=11)
    with SimulatorServer(sim) as server, httpx.Client(base_url=server.url) as c:
        yield c


def _post(client: httpx.Client, path: str, body: dict[str, Any]) -> Any:
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _events(client: httpx.Client, path: str, body: dict[str, Any]) -> list[Any]:
    answer = client.post(path, json={**body, "stream": True})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/event-stream")
    lines = [line for line in answer.text.split("\n\n") if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/fim/completions", FIM),
     ("/v1/agents/completions", AGENT)],
)  # fmt: skip
def test_completion_conforms(client: httpx.Client, spec: Spec, path: str, body: Any) -> None:
    """A completion answers its operation's JSON schema, with text and usage."""
    answer = _post(client, path.removeprefix("/v1"), body)
    spec.response(answer, path)
    assert answer["choices"][0]["message"]["content"]
    assert answer["usage"]["total_tokens"] > 0


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", CHAT), ("/v1/fim/completions", FIM),
     ("/v1/agents/completions", AGENT)],
)  # fmt: skip
def test_stream_conforms(client: httpx.Client, spec: Spec, path: str, body: Any) -> None:
    """Each streamed event is a CompletionChunk; usage and finish reason come last."""
    chunks = _events(client, path.removeprefix("/v1"), body)
    for chunk in chunks:
        spec.validate({"data": chunk}, "/components/schemas/CompletionEvent")
    assert "usage" in chunks[-1] and all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    plain = _post(client, path.removeprefix("/v1"), body)
    assert text == plain["choices"][0]["message"]["content"]


def test_max_tokens_cuts_with_length(client: httpx.Client) -> None:
    """max_tokens stops generation early with finish_reason 'length'."""
    answer = _post(client, "/chat/completions", {**CHAT, "max_tokens": 2})
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 2


def test_embeddings_conform(client: httpx.Client, spec: Spec) -> None:
    """Embeddings answer an EmbeddingResponse with one 1024-dimension vector per input."""
    answer = _post(client, "/embeddings", {"model": "mistral-embed", "input": ["a", "b c"]})
    spec.response(answer, "/v1/embeddings")
    assert [len(d["embedding"]) for d in answer["data"]] == [1024, 1024]


@pytest.mark.parametrize(
    "document",
    [{"type": "document_url", "document_url": "https://example.com/report.pdf"},
     {"type": "image_url", "image_url": "data:image/png;base64,iVBORw0KGgo="}],
)  # fmt: skip
def test_ocr_conforms(client: httpx.Client, spec: Spec, document: dict[str, str]) -> None:
    """OCR answers an OCRResponse with pages, dimensions and usage info."""
    answer = _post(client, "/ocr", {"model": "mistral-ocr-latest", "document": document})
    spec.response(answer, "/v1/ocr")
    assert answer["usage_info"]["pages_processed"] == len(answer["pages"]) > 0


@pytest.mark.parametrize(
    ("path", "body"),
    [("/chat/completions", {**CHAT, "model": "mistral-nope"}),
     ("/fim/completions", {**FIM, "model": "mistral-small-latest"}),
     ("/embeddings", {"model": "mistral-small-latest", "input": "x"}),
     ("/ocr", {"model": "mistral-small-latest", "document": {"document_url": "https://x/y"}})],
)  # fmt: skip
def test_wrong_model_is_400_mistral_error(client: httpx.Client, path: str, body: Any) -> None:
    """An unknown model, or one without the capability, is a 400 in Mistral's error shape."""
    answer = client.post(path, json=body)
    assert answer.status_code == 400
    assert not list(Draft202012Validator(MISTRAL_ERROR).iter_errors(answer.json()))


def test_unknown_agent_is_404(client: httpx.Client) -> None:
    """An agent id the simulator does not serve is a 404 in Mistral's error shape."""
    answer = client.post("/agents/completions", json={**AGENT, "agent_id": "nobody"})
    assert answer.status_code == 404
    assert not list(Draft202012Validator(MISTRAL_ERROR).iter_errors(answer.json()))


def test_invalid_body_is_http_validation_error(client: httpx.Client, spec: Spec) -> None:
    """A chat request without messages is a 422 HTTPValidationError."""
    answer = client.post("/chat/completions", json={"model": "mistral-small-latest"})
    assert answer.status_code == 422
    spec.validate(answer.json(), "/components/schemas/HTTPValidationError")


def test_stream_counters_see_a_hang_up() -> None:
    """A client that leaves mid-stream is counted as a cancelled stream."""
    sim = Simulator(seed=2)
    sim.inference.token_delay = 0.05
    with SimulatorServer(sim) as server, httpx.Client(base_url=server.url) as c:
        with c.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as answer:
            next(answer.iter_raw())
        deadline = time.monotonic() + 5
        while sim.inference.as_dict()["streams"]["cancelled"] == 0:
            assert time.monotonic() < deadline, sim.inference.as_dict()
            time.sleep(0.02)
        assert sim.inference.as_dict()["streams"] == {"started": 1, "completed": 0, "cancelled": 1}
