"""The event catalog: every trigger type, its payload fields and how each is filled.

Payloads keep the seed connector's field names and take the real API's values:
``file.uploaded`` carries ``size`` filled from the API's ``bytes``; statuses are the
API's own (``SUCCESS``, not ``succeeded``).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

Selector = tuple[str | int, ...]

WEBHOOK_PATH = "/webhooks/mistral-ai/{resource}/{action}"
"""The seed connector's per-event webhook path, as an ``http`` sink's URL template."""


@dataclasses.dataclass(frozen=True, slots=True)
class Field:
    """One payload field: its name in the event and where its value comes from."""

    name: str
    selector: Selector
    description: str
    schema: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    """The value's JSON Schema, after the real API's type for it (null where it may lack)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EventType:
    """One trigger: ``batch_job.succeeded`` and what its payload holds."""

    name: str
    description: str
    fields: tuple[Field, ...]
    seed: bool = True
    polled: bool = True

    @property
    def resource(self) -> str:
        return self.name.partition(".")[0]

    @property
    def action(self) -> str:
        return self.name.partition(".")[2]

    @property
    def webhook_path(self) -> str:
        """The seed's per-event webhook path, e.g. ``/webhooks/mistral-ai/batch_job/succeeded``."""
        return WEBHOOK_PATH.format(resource=self.resource, action=self.action)


def _f(name: str, *selector: str | int, schema: Mapping[str, Any], description: str = "") -> Field:
    return Field(name, selector or (name,), description, schema)


def _t(*types: str) -> dict[str, Any]:
    """A JSON Schema type: ``_t("string", "null")`` is a string or null."""
    return {"type": types[0] if len(types) == 1 else list(types)}


def _one_of(*values: str, nullable: bool = False) -> dict[str, Any]:
    choices: list[str | None] = [*values, None] if nullable else list(values)
    return {**(_t("string", "null") if nullable else _t("string")), "enum": choices}


# Outcome statuses are the API's own values (Mistral's OpenAPI: BatchJobStatus,
# CompletionFineTuningJob.status); a created job's status is any string the API reports,
# so a status the API adds later still fits. Finish reasons: ChatCompletionChoice.
FINISH_REASONS = ("stop", "length", "model_length", "error", "tool_calls")

_JOB_ID = _f("id", schema=_t("string"), description="Unique identifier of the job.")


def _status(*values: str) -> Field:
    return _f(
        "status", schema=_one_of(*values), description="The job's status as the API reports it."
    )


def _any_status() -> Field:
    return _f("status", schema=_t("string"), description="The job's status as the API reports it.")


def _finish_reason() -> Field:
    return _f(
        "finish_reason",
        "choices",
        0,
        "finish_reason",
        schema=_one_of(*FINISH_REASONS, nullable=True),
        description="Why generation stopped (stop, length, tool_calls...).",
    )


def _text(name: str, description: str) -> Field:
    return _f(
        name,
        "choices",
        0,
        "message",
        "content",
        schema=_t("string", "null"),
        description=description + " Null when the proxy records no content.",
    )


_BATCH_MODEL = _f(
    "model", schema=_t("string", "null"), description="Model used for the batch requests."
)
_FT_MODEL = _f("model", schema=_t("string"), description="Base model to fine-tune.")

# Workflow runs (Mistral's OpenAPI: WorkflowExecutionWithoutResultResponse, the items of
# GET /v1/workflows/runs; WorkflowExecutionStatus). A run is one run of an execution: a run
# that continues as new ends, and the next run of the same execution_id starts.
_DATE_TIME = {"type": "string", "format": "date-time"}
_RUN_IDS = (
    _f("execution_id", schema=_t("string"), description="ID of the workflow execution."),
    _f(
        "run_id",
        schema=_t("string", "null"),
        description="ID of this run of the execution (changes when it continues as new).",
    ),
    _f("workflow_name", schema=_t("string"), description="Name of the workflow."),
    _f("workflow_id", schema=_t("string", "null"), description="ID of the workflow."),
)
_RUN_CONTEXT = (
    _f(
        "deployment_name",
        schema=_t("string", "null"),
        description="Deployment that runs it (the former task queue).",
    ),
    _f(
        "root_execution_id",
        schema=_t("string"),
        description="Execution at the root of its tree (itself for a top-level run).",
    ),
    _f(
        "parent_execution_id",
        schema=_t("string", "null"),
        description="Execution that started it as a child workflow; null for a top-level run.",
    ),
    _f("user_id", schema=_t("string", "null"), description="User who triggered it."),
)
_RUN_START = _f("start_time", schema=_DATE_TIME, description="When the run started.")


def _run_outcome(action: str, status: str, when: str) -> EventType:
    return EventType(
        f"workflow_run.{action}",
        f"A workflow run {when} (status {status}).",
        (
            *_RUN_IDS,
            _f(
                "status",
                schema=_one_of(status),
                description="The run's status as the API reports it.",
            ),
            _RUN_START,
            _f(
                "end_time",
                schema={"type": ["string", "null"], "format": "date-time"},
                description="When the run ended.",
            ),
            _f(
                "total_duration_ms",
                schema=_t("integer", "null"),
                description="How long the run took, in milliseconds.",
            ),
            *_RUN_CONTEXT,
        ),
        seed=False,
    )


_WORKFLOW_RUN_TYPES = (
    EventType(
        "workflow_run.started",
        "A workflow run started: a new execution, or the next run of one that continued as new.",
        (
            *_RUN_IDS,
            _f(
                "status", schema=_t("string"), description="The run's status as the API reports it."
            ),
            _RUN_START,
            *_RUN_CONTEXT,
        ),
        seed=False,
    ),
    _run_outcome("completed", "COMPLETED", "completed"),
    _run_outcome("failed", "FAILED", "failed"),
    _run_outcome("canceled", "CANCELED", "was canceled"),
    _run_outcome("terminated", "TERMINATED", "was terminated"),
    _run_outcome("timed_out", "TIMED_OUT", "timed out"),
    _run_outcome(
        "continued_as_new",
        "CONTINUED_AS_NEW",
        "continued as new: it ended and the next run of its execution_id starts",
    ),
)

TYPES: tuple[EventType, ...] = (
    EventType(
        "batch_job.created",
        "A new batch inference job was created.",
        (_JOB_ID, _any_status(), _BATCH_MODEL),
    ),
    EventType(
        "batch_job.succeeded",
        "A batch job completed successfully (status SUCCESS).",
        (
            _JOB_ID,
            _status("SUCCESS"),
            _f(
                "output_file",
                schema=_t("string", "null"),
                description="ID of the output results file.",
            ),
            _f(
                "total_requests",
                schema=_t("integer"),
                description="Total number of requests in the batch.",
            ),
        ),
    ),
    EventType(
        "batch_job.failed",
        "A batch job failed (status FAILED or TIMEOUT_EXCEEDED).",
        (
            _JOB_ID,
            _status("FAILED", "TIMEOUT_EXCEEDED"),
            _f("error_file", schema=_t("string", "null"), description="ID of the error file."),
        ),
    ),
    EventType(
        "batch_job.cancelled",
        "A batch job was cancelled (status CANCELLED).",
        (_JOB_ID, _status("CANCELLED"), _BATCH_MODEL),
        seed=False,
    ),
    EventType(
        "batch_job.started",
        "A batch job started running (QUEUED to RUNNING); opt-in: sources.batch_jobs.emit_started.",
        (
            _JOB_ID,
            _status("RUNNING"),
            _BATCH_MODEL,
            _f(
                "started_at",
                schema=_t("integer", "null"),
                description="When the job started, in unix seconds.",
            ),
            _f(
                "total_requests",
                schema=_t("integer"),
                description="Total number of requests in the batch.",
            ),
        ),
        seed=False,
    ),
    EventType(
        "batch_job.deleted",
        "A batch job was deleted (absent from a complete listing and confirmed by a 404).",
        (
            _JOB_ID,
            _f(
                "status",
                schema=_t("string"),
                description="The last status poller saw before the job was deleted.",
            ),
            _BATCH_MODEL,
        ),
        seed=False,
    ),
    EventType(
        "fine_tuning_job.created",
        "A new fine-tuning job was created.",
        (_JOB_ID, _any_status(), _FT_MODEL),
    ),
    EventType(
        "fine_tuning_job.succeeded",
        "A fine-tuning job completed successfully (status SUCCESS).",
        (
            _JOB_ID,
            _status("SUCCESS"),
            _f(
                "fine_tuned_model",
                schema=_t("string", "null"),
                description="Name of the resulting fine-tuned model.",
            ),
            _f(
                "trained_tokens",
                schema=_t("integer", "null"),
                description="Total tokens used for training.",
            ),
        ),
    ),
    EventType(
        "fine_tuning_job.failed",
        "A fine-tuning job failed (status FAILED or FAILED_VALIDATION).",
        (_JOB_ID, _status("FAILED", "FAILED_VALIDATION")),
    ),
    EventType(
        "fine_tuning_job.cancelled",
        "A fine-tuning job was cancelled (status CANCELLED).",
        (_JOB_ID, _status("CANCELLED")),
        seed=False,
    ),
    EventType(
        "file.uploaded",
        "A new file appeared in the workspace.",
        (
            _f("id", schema=_t("string"), description="Unique identifier of the file."),
            _f("filename", schema=_t("string"), description="Name of the uploaded file."),
            _f(
                "purpose",
                schema=_t("string"),
                description="Intended use of the file (fine-tune, batch, ocr, ...).",
            ),
            _f(
                "size",
                "bytes",
                schema=_t("integer"),
                description="Size of the file in bytes (the API's `bytes`).",
            ),
        ),
    ),
    EventType(
        "file.deleted",
        "A file was deleted (absent from a complete listing and confirmed by a 404).",
        (_f("id", schema=_t("string"), description="Unique identifier of the file."),),
    ),
    EventType(
        "model.created",
        "A new fine-tuned model appeared.",
        (
            _f("id", schema=_t("string"), description="Model identifier."),
            _f("owned_by", schema=_t("string"), description="Organization that owns the model."),
            _f("root", schema=_t("string"), description="Base model it was fine-tuned from."),
            _f(
                "job",
                schema=_t("string"),
                description="ID of the fine-tuning job that produced it.",
            ),
        ),
        seed=False,
    ),
    EventType(
        "model.deleted",
        "A fine-tuned model was deleted (absent from the listing and confirmed by a 404).",
        (
            _f("id", schema=_t("string"), description="Model identifier."),
            _f("owned_by", schema=_t("string"), description="Organization that owns the model."),
        ),
    ),
    *_WORKFLOW_RUN_TYPES,
    EventType(
        "chat_completion.created",
        "A chat completion was generated.",
        (
            _f("id", schema=_t("string"), description="Unique identifier of the chat completion."),
            _f("model", schema=_t("string"), description="Model used to generate the response."),
            _text("content", "Response text."),
            _f(
                "usage_total_tokens",
                "usage",
                "total_tokens",
                schema=_t("integer", "null"),
                description="Total tokens used.",
            ),
            _finish_reason(),
        ),
        polled=False,
    ),
    EventType(
        "fim_completion.created",
        "A fill-in-the-middle completion was generated.",
        (
            _f("id", schema=_t("string"), description="Unique identifier of the FIM completion."),
            _f("model", schema=_t("string"), description="Model used for the FIM completion."),
            _text("text", "Generated code text."),
            _f(
                "usage_completion_tokens",
                "usage",
                "completion_tokens",
                schema=_t("integer", "null"),
                description="Tokens generated in the completion.",
            ),
            _finish_reason(),
        ),
        polled=False,
    ),
    EventType(
        "embeddings.generated",
        "Embeddings were generated.",
        (
            _f("model", schema=_t("string"), description="Model used for generating embeddings."),
            _f("object", schema=_t("string"), description="Object type, always 'list'."),
            _f(
                "usage_prompt_tokens",
                "usage",
                "prompt_tokens",
                schema=_t("integer", "null"),
                description="Prompt tokens.",
            ),
            _f(
                "count",
                schema=_t("integer"),
                description="Number of embeddings (the vectors themselves are left out).",
            ),
            _f(
                "dimension",
                schema=_t("integer", "null"),
                description="Length of each embedding vector.",
            ),
        ),
        polled=False,
    ),
    EventType(
        "agent_completion.created",
        "An agent produced a response.",
        (
            _f("id", schema=_t("string"), description="Unique identifier of the agent completion."),
            _f("model", schema=_t("string"), description="Model underlying the agent."),
            _text("content", "Response text."),
            _f(
                "usage_total_tokens",
                "usage",
                "total_tokens",
                schema=_t("integer", "null"),
                description="Total tokens used.",
            ),
            _finish_reason(),
        ),
        polled=False,
    ),
    EventType(
        "ocr.completed",
        "Text was extracted from a document or image.",
        (
            _f("model", schema=_t("string"), description="OCR model used for processing."),
            _f(
                "pages_processed",
                "usage_info",
                "pages_processed",
                schema=_t("integer"),
                description="Pages processed.",
            ),
            _f(
                "doc_size_bytes",
                "usage_info",
                "doc_size_bytes",
                schema=_t("integer", "null"),
                description="Document size.",
            ),
        ),
        polled=False,
    ),
)

TEST = EventType(
    "poller.test",
    "A test event sent by `poller sinks test`; it is never recorded in the outbox.",
    (
        _f("sink", schema=_t("string"), description="Name of the sink being tested."),
        _f("message", schema=_t("string"), description="A human-readable note."),
    ),
    seed=False,
    polled=False,
)
"""Not a trigger: the event ``poller sinks test`` sends to check a sink end to end."""

BY_NAME: Mapping[str, EventType] = {t.name: t for t in TYPES}


def get(name: str) -> EventType:
    """The event type called ``name``; ``KeyError`` for one not in the catalog."""
    return BY_NAME[name]


def select(obj: Any, selector: Sequence[str | int]) -> Any:
    """Follow ``selector`` into ``obj``; ``None`` where any step is missing."""
    for step in selector:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return None
            obj = obj[step]
        else:
            if not isinstance(obj, Mapping) or step not in obj:
                return None
            obj = obj[step]
    return obj


def payload(event_type: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """The payload of ``event_type`` filled from the API object ``obj``, in catalog order."""
    return {f.name: select(obj, f.selector) for f in get(event_type).fields}


def selectors(event_types: Sequence[str]) -> tuple[Selector, ...]:
    """Every selector the given event types read, without duplicates."""
    seen: dict[Selector, None] = {}
    for name in event_types:
        for f in get(name).fields:
            seen.setdefault(f.selector, None)
    return tuple(seen)


def event_id(*parts: str | int | None) -> str:
    """A stable event id derived from what identifies one transition of one resource.

    The same parts always give the same id, so a transition detected again after a crash
    or a restart carries the id it had the first time.
    """
    material = "\x1f".join("" if p is None else str(p) for p in parts).encode()
    digest = hashlib.sha256(material).digest()[:16]
    return "evt_" + base64.b32encode(digest).decode().rstrip("=").lower()
