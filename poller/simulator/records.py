"""The simulator's records and how each is shown by the API at a given moment.

Jobs are mutable records whose status is computed from their timeline; files and
models never change once created, so they are stored as the API shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poller.simulator import lifecycle
from poller.simulator.index import Key
from poller.simulator.lifecycle import BATCH, Timeline

Json = dict[str, Any]


@dataclass(slots=True, eq=False, kw_only=True)
class Job:
    """What batch and fine-tuning jobs share: identity, plan and index bookkeeping."""

    id: str
    seq: int
    created_at: float
    timeline: Timeline
    outcome: str
    durations: dict[str, float]
    held: bool = False
    # bumped whenever the timeline is rewritten, so stale scheduled transitions are ignored
    version: int = 0
    # the status the table files the job under (its status at the last settle)
    status: str = "QUEUED"
    # the side effects of its final status (output file, model) are done
    finished: bool = False

    @property
    def key(self) -> Key:
        return (self.created_at, self.seq, self.id)


@dataclass(slots=True, eq=False, kw_only=True)
class BatchJob(Job):
    model: str | None
    endpoint: str
    input_files: list[str]
    metadata: dict[str, Any] | None
    agent_id: str | None = None
    total_requests: int
    # the share of requests done when the job stops, and the share of those that fail
    reach: float = 1.0
    fail_ratio: float = 0.0
    output_file: str | None = None
    error_file: str | None = None

    def counters(self, t: float) -> tuple[int, int, int]:
        """``(completed, succeeded, failed)`` requests at ``t``."""
        completed = int(self.total_requests * lifecycle.progress(self.timeline, t, self.reach))
        failed = int(completed * self.fail_ratio)
        return completed, completed - failed, failed


@dataclass(slots=True, eq=False, kw_only=True)
class FineTuningJob(Job):
    model: str
    training_files: list[dict[str, Any]]
    validation_files: list[str] = field(default_factory=list)
    hyperparameters: dict[str, Any]
    suffix: str | None = None
    auto_start: bool = True
    metadata: dict[str, Any]
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None


@dataclass(slots=True, eq=False, kw_only=True)
class Item:
    """A file or a model card: shown as stored."""

    id: str
    seq: int
    created_at: float
    body: Json

    @property
    def key(self) -> Key:
        return (self.created_at, self.seq, self.id)


def _final_at(timeline: Timeline, t: float, terminal: frozenset[str]) -> int | None:
    i = lifecycle.index_at(timeline, t)
    status, at = timeline[i]
    return int(at) if status in terminal else None


def batch_job_view(job: BatchJob, t: float) -> Json:
    """A ``BatchJob`` as ``GET /v1/batch/jobs/{id}`` shows it at ``t``."""
    status = lifecycle.status_at(job.timeline, t)
    completed, succeeded, failed = job.counters(t)
    started = lifecycle.entered_at(job.timeline, "RUNNING", t)
    return {
        "id": job.id,
        "object": "batch",
        "input_files": list(job.input_files),
        "metadata": job.metadata,
        "endpoint": job.endpoint,
        "model": job.model,
        "agent_id": job.agent_id,
        "output_file": job.output_file if status == "SUCCESS" else None,
        "error_file": job.error_file if status in ("FAILED", "TIMEOUT_EXCEEDED") else None,
        "errors": [],
        "outputs": None,
        "status": status,
        "created_at": int(job.created_at),
        "total_requests": job.total_requests,
        "completed_requests": completed,
        "succeeded_requests": succeeded,
        "failed_requests": failed,
        "started_at": None if started is None else int(started),
        "completed_at": _final_at(job.timeline, t, BATCH.terminal),
    }


def fine_tuning_job_view(job: FineTuningJob, t: float, *, details: bool = False) -> Json:
    """A ``CompletionFineTuningJob`` (or ``...Details`` with ``details``) at ``t``."""
    i = lifecycle.index_at(job.timeline, t)
    status, modified = job.timeline[i]
    success = status == "SUCCESS"
    view: Json = {
        "id": job.id,
        "auto_start": job.auto_start,
        "model": job.model,
        "status": status,
        "created_at": int(job.created_at),
        "modified_at": int(modified),
        "training_files": [f["file_id"] for f in job.training_files],
        "validation_files": list(job.validation_files),
        "object": "job",
        "fine_tuned_model": job.fine_tuned_model if success else None,
        "suffix": job.suffix,
        "integrations": [],
        "trained_tokens": job.trained_tokens if success else None,
        "metadata": dict(job.metadata),
        "job_type": "completion",
        "hyperparameters": dict(job.hyperparameters),
        "repositories": [],
    }
    if details:
        view["events"] = [
            {"name": "status-updated", "data": {"status": name}, "created_at": int(at)}
            for name, at in job.timeline[: i + 1]
        ]
        view["checkpoints"] = []
    return view


def _capabilities(**enabled: bool) -> Json:
    names = (
        "completion_chat",
        "function_calling",
        "reasoning",
        "completion_fim",
        "fine_tuning",
        "vision",
        "ocr",
        "classification",
        "moderation",
        "audio",
        "audio_transcription",
        "audio_transcription_realtime",
        "audio_speech",
        "unified_resources",
    )
    return {name: enabled.get(name, False) for name in names}


_CHAT = {"completion_chat": True, "function_calling": True, "fine_tuning": True}

# id, versioned name, description, context length, temperature, created, capabilities
_BASE_MODELS: tuple[tuple[str, str, str, int, float | None, int, Json], ...] = (
    (
        "mistral-small-latest",
        "mistral-small-2506",
        "Our efficient small model for everyday tasks.",
        131072,
        0.3,
        1750118400,
        _capabilities(**_CHAT, vision=True),
    ),
    (
        "mistral-large-latest",
        "mistral-large-2411",
        "Our top-tier reasoning model for high-complexity tasks.",
        131072,
        0.7,
        1731974400,
        _capabilities(**_CHAT),
    ),
    (
        "open-mistral-nemo",
        "open-mistral-nemo-2407",
        "Our best multilingual open source model.",
        131072,
        0.3,
        1721001600,
        _capabilities(**_CHAT),
    ),
    (
        "codestral-latest",
        "codestral-2508",
        "Our cutting-edge language model for coding.",
        256000,
        0.3,
        1754006400,
        _capabilities(**_CHAT, completion_fim=True),
    ),
    (
        "mistral-embed",
        "mistral-embed-2312",
        "Our state-of-the-art semantic model for extracting representations of text.",
        8192,
        None,
        1702339200,
        _capabilities(),
    ),
)


def base_model_cards() -> list[Json]:
    """The ``BaseModelCard``\\ s every simulator starts with."""
    return [
        {
            "id": model_id,
            "object": "model",
            "created": created,
            "owned_by": "mistralai",
            "capabilities": dict(caps),
            "name": name,
            "description": description,
            "max_context_length": context,
            "aliases": [name],
            "deprecation": None,
            "deprecation_replacement_model": None,
            "default_model_temperature": temperature,
            "type": "base",
        }
        for model_id, name, description, context, temperature, created, caps in _BASE_MODELS
    ]


def fine_tuned_model_card(
    model_id: str, *, root: str, job: str, created: float, owned_by: str, base: Json | None
) -> Json:
    """The ``FTModelCard`` of a model fine-tuned from ``root`` by ``job``."""
    caps = dict(base["capabilities"]) if base else _capabilities(completion_chat=True)
    caps["fine_tuning"] = False
    return {
        "id": model_id,
        "object": "model",
        "created": int(created),
        "owned_by": owned_by,
        "capabilities": caps,
        "name": None,
        "description": None,
        "max_context_length": base["max_context_length"] if base else 32768,
        "aliases": [],
        "deprecation": None,
        "deprecation_replacement_model": None,
        "default_model_temperature": base["default_model_temperature"] if base else None,
        "type": "fine-tuned",
        "job": job,
        "root": root,
        "archived": False,
    }
