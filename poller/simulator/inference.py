"""The synchronous endpoints: chat, FIM and agent completions, embeddings, OCR.

Answers are made up but shaped as Mistral's schemas say, and deterministic: the same
prompt to the same model gives the same text (ids and ``created`` differ per call).
Completions stream when asked (``"stream": true``): ``data: {CompletionChunk}`` events, one
per token, ``usage`` on the last chunk, then ``data: [DONE]``. ``Inference`` counts the
streams that ran to their end and those their client abandoned, and can slow each token
down (``token_delay``) so that a test can hang up mid-stream.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from poller.simulator import schemas
from poller.simulator.errors import InvalidRequest, NotFound, Unprocessable
from poller.simulator.records import Json

EMBEDDING_DIMENSION = 1024
OCR_MODELS = ("mistral-ocr-latest", "mistral-ocr-2505")
"""Models the OCR endpoint serves (they are not among the listed model cards)."""
AGENT_MODEL = "mistral-small-latest"
PAGE = {"dpi": 200, "height": 2339, "width": 1654}
_WORDS = (
    "the model considers your question and answers it in plain words with care "
    "while keeping every sentence short clear and useful for the reader who asked"
).split()


class Inference:
    """Counters and pacing of the synchronous endpoints; thread-safe."""

    def __init__(self, *, seed: int | None = None, token_delay: float = 0.0) -> None:
        self.token_delay = token_delay
        self._seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.streams = {"started": 0, "completed": 0, "cancelled": 0}

    def new_id(self) -> str:
        with self._lock:
            return f"{self._rng.getrandbits(128):032x}"

    def stream_started(self) -> None:
        with self._lock:
            self.streams["started"] += 1

    def stream_ended(self, completed: bool) -> None:
        with self._lock:
            self.streams["completed" if completed else "cancelled"] += 1

    def as_dict(self) -> Json:
        with self._lock:
            return {"token_delay": self.token_delay, "streams": dict(self.streams)}

    def reset(self) -> None:
        with self._lock:
            self.streams = dict.fromkeys(self.streams, 0)
            self._rng = random.Random(self._seed)


# ---------------------------------------------------------------------- requests


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatRequest(_Body):
    model: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=1.5)
    stream: bool = False


class AgentRequest(_Body):
    agent_id: str
    messages: list[dict[str, Any]] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=0)
    stream: bool = False


class FimRequest(_Body):
    model: str
    prompt: str
    suffix: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float | None = Field(default=None, ge=0, le=1.5)
    stream: bool = False


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    output_dimension: int | None = Field(default=None, gt=0)


class OcrRequest(_Body):
    model: str | None
    document: dict[str, Any]
    pages: str | list[int] | None = None


# ---------------------------------------------------------------------- answers


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return ""


def _has_image(messages: list[dict[str, Any]]) -> bool:
    return any(
        isinstance(c, dict) and c.get("type") == "image_url"
        for m in messages
        if isinstance(m.get("content"), list)
        for c in m["content"]
    )


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def reply(prompt: str, model: str, limit: int | None) -> tuple[list[str], str]:
    """The tokens answering ``prompt`` (each with its leading space) and the finish reason."""
    digest = hashlib.sha256(f"{model}\x1f{prompt}".encode()).digest()
    rng = random.Random(digest)
    natural = 8 + digest[0] % 24
    words = [rng.choice(_WORDS) for _ in range(natural)]
    words[0] = words[0].capitalize()
    words[-1] += "."
    tokens = [w if i == 0 else " " + w for i, w in enumerate(words)]
    if limit is not None and limit < len(tokens):
        return tokens[:limit], "length"
    return tokens, "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> Json:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion(
    id: str, created: int, model: str, tokens: list[str], finish: str, prompt_tokens: int
) -> Json:
    return {
        "id": id,
        "object": "chat.completion",
        "model": model,
        "usage": _usage(prompt_tokens, len(tokens)),
        "created": created,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(tokens),
                    "tool_calls": None,
                    "prefix": False,
                },
                "finish_reason": finish,
            }
        ],
    }


def _chunks(
    id: str, created: int, model: str, tokens: list[str], finish: str, prompt_tokens: int
) -> list[Json]:
    head = {"id": id, "object": "chat.completion.chunk", "created": created, "model": model}
    chunks = [
        head
        | {
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ]
        }
    ]
    for token in tokens:
        chunks.append(
            head | {"choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}]}
        )
    chunks.append(
        head
        | {
            "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": finish}],
            "usage": _usage(prompt_tokens, len(tokens)),
        }
    )
    return chunks


class _EventStream(StreamingResponse):
    """Server-sent events that tell ``Inference`` whether they reached their end."""

    def __init__(self, chunks: list[Json], inference: Inference) -> None:
        self.inference = inference
        self.finished = False
        super().__init__(self._events(chunks), media_type="text/event-stream")

    async def _events(self, chunks: list[Json]) -> AsyncIterator[bytes]:
        for n, chunk in enumerate(chunks):
            if n and self.inference.token_delay:
                await asyncio.sleep(self.inference.token_delay)
            yield b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
        # the consumer asks for more only once the last event was sent
        self.finished = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.inference.stream_started()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.inference.stream_ended(self.finished)


def _model_card(sim: Any, model: str) -> Json:
    try:
        card: Json = sim.get_model(model)
    except NotFound:
        raise InvalidRequest(f"Invalid model: {model}") from None
    return card


def _require(card: Json, capability: str, what: str) -> None:
    if not card.get("capabilities", {}).get(capability):
        raise InvalidRequest(f"Model {card['id']} does not support {what}")


def _document_size(sim: Any, document: dict[str, Any]) -> tuple[int | None, str]:
    """(size in bytes, what names it) of an OCR document."""
    kind = document.get("type") or next(
        (k for k in ("document_url", "image_url", "file_id") if k in document), None
    )
    if kind == "file" or (kind is None and "file_id" in document):
        file = sim.get_file(schemas.path_uuid(str(document.get("file_id")), "file_id"))
        return int(file["bytes"]), str(file["filename"])
    url = document.get("document_url") if kind == "document_url" else document.get("image_url")
    if isinstance(url, dict):
        url = url.get("url")
    if not isinstance(url, str) or not url:
        missing = {"type": "missing", "loc": ["body", "document", kind or "document_url"]}
        raise Unprocessable([missing | {"msg": "Field required", "input": document}])
    if url.startswith("data:"):
        _, _, data = url.partition(",")
        try:
            return len(base64.b64decode(data, validate=False)), "upload"
        except ValueError:
            raise InvalidRequest("the data URL is not valid base64") from None
    return 40_000 + int(hashlib.sha256(url.encode()).hexdigest()[:4], 16), url.rsplit("/", 1)[-1]


def routes(sim: Any, inference: Inference, now: Callable[[], float]) -> list[Route]:
    """The synchronous endpoints' routes, answering from ``sim`` and ``inference``."""

    def complete(
        model: str, prompt: str, prompt_tokens: int, limit: int | None, stream: bool
    ) -> Response:
        tokens, finish = reply(prompt, model, limit)
        args = (inference.new_id(), int(now()), model, tokens, finish, prompt_tokens)
        if stream:
            return _EventStream(_chunks(*args), inference)
        return JSONResponse(_completion(*args))

    def prompt_of(messages: list[dict[str, Any]]) -> tuple[str, int]:
        text = "\n".join(_text(m.get("content")) for m in messages)
        return text, sum(_tokens(_text(m.get("content"))) + 2 for m in messages)

    async def chat(request: Request) -> Response:
        body = schemas.parse_body(ChatRequest, await request.body())
        card = _model_card(sim, body.model)
        _require(card, "completion_chat", "chat completions")
        if _has_image(body.messages):
            _require(card, "vision", "images")
        text, used = prompt_of(body.messages)
        return complete(body.model, text, used, body.max_tokens, body.stream)

    async def fim(request: Request) -> Response:
        body = schemas.parse_body(FimRequest, await request.body())
        card = _model_card(sim, body.model)
        _require(card, "completion_fim", "fill-in-the-middle completions")
        used = _tokens(body.prompt) + _tokens(body.suffix or "")
        prompt = f"{body.prompt}\x1f{body.suffix or ''}"
        return complete(body.model, prompt, used, body.max_tokens, body.stream)

    async def agents(request: Request) -> Response:
        body = schemas.parse_body(AgentRequest, await request.body())
        if not body.agent_id.startswith(("ag:", "ag_")):
            raise NotFound(f"Agent not found: {body.agent_id}")
        text, used = prompt_of(body.messages)
        prompt = f"{body.agent_id}\x1f{text}"
        return complete(AGENT_MODEL, prompt, used, body.max_tokens, body.stream)

    async def embeddings(request: Request) -> Response:
        body = schemas.parse_body(EmbeddingRequest, await request.body())
        card = _model_card(sim, body.model)
        if "embed" not in card["id"]:
            raise InvalidRequest(f"Model {card['id']} does not support embeddings")
        inputs = [body.input] if isinstance(body.input, str) else body.input
        if not inputs:
            raise InvalidRequest("input must not be empty")
        size = body.output_dimension or EMBEDDING_DIMENSION
        data = []
        for index, text in enumerate(inputs):
            rng = random.Random(hashlib.sha256(f"{body.model}\x1f{text}".encode()).digest())
            vector = [round(rng.uniform(-0.1, 0.1), 6) for _ in range(size)]
            data.append({"object": "embedding", "embedding": vector, "index": index})
        used = sum(_tokens(t) for t in inputs)
        return JSONResponse(
            {
                "id": inference.new_id(),
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": _usage(used, 0),
            }
        )

    async def ocr(request: Request) -> Response:
        body = schemas.parse_body(OcrRequest, await request.body())
        if body.model not in OCR_MODELS:
            raise InvalidRequest(f"Invalid model: {body.model}")
        size, name = _document_size(sim, body.document)
        count = 1 + int(hashlib.sha256(name.encode()).hexdigest()[:2], 16) % 3
        wanted = body.pages if isinstance(body.pages, list) and body.pages else range(count)
        pages: list[Json] = [
            {
                "index": i,
                "markdown": f"# {name}\n\nPage {i + 1} of the simulated document.",
                "images": [],
                "tables": [],
                "hyperlinks": [],
                "header": None,
                "footer": None,
                "dimensions": dict(PAGE),
            }
            for i in sorted(set(wanted))
        ]
        return JSONResponse(
            {
                "pages": pages,
                "model": body.model,
                "document_annotation": None,
                "usage_info": {"pages_processed": len(pages), "doc_size_bytes": size},
            }
        )

    return [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/fim/completions", fim, methods=["POST"]),
        Route("/v1/agents/completions", agents, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/ocr", ocr, methods=["POST"]),
    ]


class SimInference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token_delay: float | None = Field(default=None, ge=0, le=60)


def control_routes(inference: Inference) -> list[Route]:
    """``/_sim/inference``: the stream counters, and the delay between streamed tokens."""

    async def get_inference(request: Request) -> Response:
        return JSONResponse(inference.as_dict())

    async def set_inference(request: Request) -> Response:
        body = schemas.parse_body(SimInference, await request.body(), required=False)
        if body.token_delay is not None:
            inference.token_delay = body.token_delay
        return JSONResponse(inference.as_dict())

    return [
        Route("/_sim/inference", get_inference, methods=["GET"]),
        Route("/_sim/inference", set_inference, methods=["POST"]),
    ]
