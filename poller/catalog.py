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

# Libraries and their documents (Mistral's OpenAPI: Library, Document, ProcessStatus).
# Times are the API's own ISO 8601 strings; the deprecated fields (``hash``,
# ``processing_status``, ``tokens_processing_*`` but the total) are left out.
_DATE_TIME = {"type": "string", "format": "date-time"}
_MAYBE_DATE_TIME = {"type": ["string", "null"], "format": "date-time"}
_LIBRARY_ID = _f("id", schema=_t("string"), description="Unique identifier of the library.")
_LIBRARY_NAME = _f("name", schema=_t("string"), description="Name of the library.")
_DOCUMENT_ID = _f("id", schema=_t("string"), description="Unique identifier of the document.")
_DOCUMENT_LIBRARY = _f(
    "library_id", schema=_t("string"), description="The library the document belongs to."
)
_DOCUMENT_NAME = _f("name", schema=_t("string"), description="Name of the document.")
_MIME_TYPE = _f(
    "mime_type", schema=_t("string", "null"), description="MIME type of the uploaded file."
)
_SIZE = _f("size", schema=_t("integer", "null"), description="Size of the document in bytes.")
_LAST_PROCESSED = _f(
    "last_processed_at",
    schema=_MAYBE_DATE_TIME,
    description="When processing last ended, as the API reports it.",
)


def _process_status(*values: str) -> Field:
    return _f(
        "process_status",
        schema=_one_of(*values) if values else _t("string"),
        description="The document's processing status (the API's ProcessStatus).",
    )


_LIBRARIES: tuple[EventType, ...] = (
    EventType(
        "library.created",
        "A new library appeared.",
        (
            _LIBRARY_ID,
            _LIBRARY_NAME,
            _f(
                "description",
                schema=_t("string", "null"),
                description="The library's description.",
            ),
            _f(
                "owner_type",
                schema=_t("string"),
                description="Who owns it: `Workspace` or `User`.",
            ),
            _f("created_at", schema=_DATE_TIME, description="When the library was created."),
        ),
        seed=False,
    ),
    EventType(
        "library.deleted",
        "A library was deleted (absent from the listing and confirmed by a 404), "
        "its documents with it.",
        (_LIBRARY_ID, _LIBRARY_NAME),
        seed=False,
    ),
    EventType(
        "library_document.uploaded",
        "A new document appeared in a library; its processing follows.",
        (
            _DOCUMENT_ID,
            _DOCUMENT_LIBRARY,
            _DOCUMENT_NAME,
            _MIME_TYPE,
            _SIZE,
            _process_status(),
            _f("created_at", schema=_DATE_TIME, description="When the document was uploaded."),
        ),
        seed=False,
    ),
    EventType(
        "library_document.processed",
        "A document's processing ended with ProcessStatus `done`: its text is extracted "
        "and it is searchable in its library. A reprocessed document gets a new event.",
        (
            _DOCUMENT_ID,
            _DOCUMENT_LIBRARY,
            _DOCUMENT_NAME,
            _MIME_TYPE,
            _SIZE,
            _process_status("done"),
            _LAST_PROCESSED,
            _f(
                "number_of_pages",
                schema=_t("integer", "null"),
                description="Pages found in the document, when it has pages.",
            ),
            _f(
                "tokens_processing_total",
                schema=_t("integer", "null"),
                description="Tokens spent processing the document.",
            ),
            _f(
                "summary",
                schema=_t("string", "null"),
                description="The summary the processing wrote; null when there is none.",
            ),
        ),
        seed=False,
    ),
    EventType(
        "library_document.failed",
        "A document's processing ended with ProcessStatus `error` or `missing_content`. "
        "A reprocessed document gets a new event.",
        (
            _DOCUMENT_ID,
            _DOCUMENT_LIBRARY,
            _DOCUMENT_NAME,
            _MIME_TYPE,
            _process_status("error", "missing_content"),
            _LAST_PROCESSED,
        ),
        seed=False,
    ),
    EventType(
        "library_document.deleted",
        "A document was deleted, by itself or with its library (absent from a complete "
        "listing and confirmed by a 404).",
        (_DOCUMENT_ID, _DOCUMENT_LIBRARY, _DOCUMENT_NAME),
        seed=False,
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
    *_LIBRARIES,
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
