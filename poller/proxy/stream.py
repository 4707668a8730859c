"""Reading what the API sent back: content decoding and the server-sent-events side parser.

Streamed completions arrive as ``data: {CompletionChunk}`` events closed by
``data: [DONE]``. ``Assembler`` reads them in pieces of any size and puts together what
a non-streamed answer would have held — id, model, content, finish reason and ``usage``
(which comes on the last chunk) — so that one event builder serves both forms.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

DONE = "[DONE]"


def decode(body: bytes, encoding: str | None) -> bytes:
    """``body`` without its ``Content-Encoding`` (gzip, deflate or none).

    Raises ``ValueError`` for an encoding it cannot undo or a body it cannot decode.
    """
    name = (encoding or "identity").strip().lower()
    if name in ("", "identity"):
        return body
    try:
        if name in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if name == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:  # some servers send raw deflate without the zlib header
                return zlib.decompress(body, -zlib.MAX_WBITS)
    except zlib.error as exc:
        raise ValueError(f"the {name} body cannot be decoded: {exc}") from None
    raise ValueError(f"cannot decode content-encoding {encoding!r}")


def text_of(content: Any) -> str | None:
    """Message content as text: a string as it is, the text chunks of a list joined."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            c["text"]
            for c in content
            if isinstance(c, dict) and c.get("type", "text") == "text" and "text" in c
        ]
        return "".join(str(p) for p in parts)
    return str(content)


class Assembler:
    """Feeds on a server-sent-events body and assembles the completion it streams.

    ``feed`` accepts the body in pieces of any size and returns the ``data`` payloads
    that those pieces completed. ``result()`` is the assembled answer, shaped like a
    ``ChatCompletionResponse``, once ``data: [DONE]`` was seen; ``None`` before.
    ``keep_content=False`` assembles everything but the text.
    """

    def __init__(self, *, keep_content: bool = True) -> None:
        self.keep_content = keep_content
        self.done = False
        self.chunks = 0
        self._buffer = b""
        self._data: list[str] = []
        self._head: dict[str, Any] = {}
        self._usage: Any = None
        self._choices: dict[int, dict[str, Any]] = {}

    def feed(self, piece: bytes) -> list[str]:
        """Read ``piece``; return the ``data`` payloads of the events it completed."""
        buffer = self._buffer + piece if self._buffer else piece
        payloads: list[str] = []
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end].rstrip(b"\r").decode("utf-8", errors="replace")
            start = end + 1
            if not line:
                if self._data:
                    payload = "\n".join(self._data)
                    self._data = []
                    payloads.append(payload)
                    self._dispatch(payload)
                continue
            field, _, value = line.partition(":")
            if field == "data":
                self._data.append(value[1:] if value.startswith(" ") else value)
        self._buffer = buffer[start:]
        return payloads

    def close(self) -> list[str]:
        """End of the body: an event left without its blank line still counts."""
        payloads = self.feed(b"\n") if self._buffer else []
        if self._data:
            payloads += self.feed(b"\n")
        return payloads

    def _dispatch(self, payload: str) -> None:
        if payload.strip() == DONE:
            self.done = True
            return
        try:
            chunk = json.loads(payload)
        except ValueError:
            return
        if not isinstance(chunk, dict):
            return
        self.chunks += 1
        for key in ("id", "model", "created"):
            if key in chunk and key not in self._head:
                self._head[key] = chunk[key]
        if chunk.get("usage") is not None:
            self._usage = chunk["usage"]
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            slot = self._choices.setdefault(
                index if isinstance(index, int) else 0,
                {"role": "assistant", "parts": [], "finish_reason": None},
            )
            delta = choice.get("delta") or {}
            if isinstance(delta, dict):
                if delta.get("role"):
                    slot["role"] = delta["role"]
                if self.keep_content:
                    text = text_of(delta.get("content"))
                    if text:
                        slot["parts"].append(text)
            if choice.get("finish_reason") is not None:
                slot["finish_reason"] = choice["finish_reason"]

    def result(self) -> dict[str, Any] | None:
        """The assembled completion, or ``None`` while ``data: [DONE]`` has not come."""
        if not self.done:
            return None
        choices = [
            {
                "index": index,
                "message": {
                    "role": slot["role"],
                    "content": "".join(slot["parts"]) if self.keep_content else None,
                },
                "finish_reason": slot["finish_reason"],
            }
            for index, slot in sorted(self._choices.items())
        ]
        answer: dict[str, Any] = {**self._head, "object": "chat.completion", "choices": choices}
        if self._usage is not None:
            answer["usage"] = self._usage
        return answer


def assemble(body: bytes, *, keep_content: bool = True) -> dict[str, Any] | None:
    """The completion a whole server-sent-events body streams; ``None`` without ``[DONE]``."""
    assembler = Assembler(keep_content=keep_content)
    assembler.feed(body)
    assembler.close()
    return assembler.result()
