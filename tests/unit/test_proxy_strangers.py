"""Calls with a key no workspace has: each counted, each key named once by its fingerprint."""

from __future__ import annotations

import structlog

from poller.proxy.strangers import Strangers


def test_every_call_counts_and_each_key_is_named_once() -> None:
    """Three calls of two keys: three counts, two lines; a forgotten key is named again."""
    counted: list[str] = []
    strangers = Strangers(count=counted.append, remember=2)
    with structlog.testing.capture_logs() as logs:
        strangers.saw(b"Bearer k1", kind="trigger", path="/chat/completions")
        strangers.saw(b"Bearer k1", kind="hint", path="/files?purpose=batch")
        strangers.saw(b"Bearer k2", kind="trigger", path="/embeddings")
        strangers.saw(b"Bearer k3", kind="trigger", path="/embeddings")  # k1 forgotten
        strangers.saw(b"Bearer k1", kind="trigger", path="/ocr")
    assert counted == ["trigger", "hint", "trigger", "trigger", "trigger"]
    assert [(x["key_fingerprint"], x["path"]) for x in logs] == [
        ("sha256:6ab9f1eb", "/chat/completions"),
        ("sha256:015f7e6b", "/embeddings"),
        ("sha256:2f5052c9", "/embeddings"),
        ("sha256:6ab9f1eb", "/ocr"),
    ]
