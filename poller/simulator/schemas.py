"""What the routes accept, as pydantic models, so that a 422 reads like Mistral's (FastAPI's).

Query models list the parameters that may repeat (``status=A&status=B``) in
``repeated``; ``parse_query``/``parse_body`` raise ``Unprocessable`` carrying the
``detail`` of an ``HTTPValidationError``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from pydantic import model_validator as _model_validator
from starlette.datastructures import QueryParams

from poller.simulator.errors import Unprocessable

BatchJobStatus = Literal[
    "QUEUED",
    "RUNNING",
    "SUCCESS",
    "FAILED",
    "TIMEOUT_EXCEEDED",
    "CANCELLATION_REQUESTED",
    "CANCELLED",
]
FineTuningJobStatus = Literal[
    "QUEUED",
    "STARTED",
    "VALIDATING",
    "VALIDATED",
    "RUNNING",
    "FAILED_VALIDATION",
    "FAILED",
    "SUCCESS",
    "CANCELLED",
    "CANCELLATION_REQUESTED",
]
FilePurpose = Literal["fine-tune", "batch", "ocr"]
SampleType = Literal["pretrain", "instruct", "batch_request", "batch_result", "batch_error"]
Source = Literal["upload", "repository", "mistral"]
ApiEndpoint = Literal[
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/fim/completions",
    "/v1/moderations",
    "/v1/chat/moderations",
    "/v1/ocr",
    "/v1/classifications",
    "/v1/chat/classifications",
    "/v1/conversations",
    "/v1/audio/transcriptions",
]

Page = Annotated[int, Field(ge=0)]
PageSize = Annotated[int, Field(ge=1)]


class Query(BaseModel):
    """Query parameters; unknown ones are ignored, as FastAPI does."""

    repeated: ClassVar[frozenset[str]] = frozenset()


class BatchJobsQuery(Query):
    repeated = frozenset({"status"})
    page: Page = 0
    page_size: PageSize = 100
    model: str | None = None
    agent_id: str | None = None
    metadata: str | None = None
    created_after: dt.datetime | None = None
    created_by_me: bool = False
    status: list[BatchJobStatus] | None = None
    order_by: Literal["created", "-created"] = "-created"


class BatchJobQuery(Query):
    inline: bool | None = None


class FineTuningJobsQuery(Query):
    page: Page = 0
    page_size: PageSize = 100
    model: str | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    created_by_me: bool = False
    status: FineTuningJobStatus | None = None
    wandb_project: str | None = None
    wandb_name: str | None = None
    suffix: str | None = None


class CreateFineTuningJobQuery(Query):
    dry_run: bool | None = None


class FilesQuery(Query):
    repeated = frozenset({"sample_type", "source", "mimetypes"})
    page: Page = 0
    page_size: PageSize = 100
    include_total: bool = True
    sample_type: list[SampleType] | None = None
    source: list[Source] | None = None
    search: str | None = None
    purpose: FilePurpose | None = None
    mimetypes: list[str] | None = None


class BatchRequest(BaseModel):
    custom_id: str | None = None
    body: dict[str, Any]


MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=32)]
MetadataValue = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class CreateBatchJobRequest(BaseModel):
    input_files: list[uuid.UUID] | None = None
    requests: Annotated[list[BatchRequest], Field(max_length=10000)] | None = None
    endpoint: ApiEndpoint
    model: str | None = None
    agent_id: str | None = None
    metadata: dict[MetadataKey, MetadataValue] | None = None
    timeout_hours: int = Field(24, ge=1, le=168)

    @_model_validator(mode="after")
    def _has_inputs(self) -> CreateBatchJobRequest:
        if not self.input_files and not self.requests:
            raise ValueError("either input_files or requests must be given")
        return self


class TrainingFile(BaseModel):
    file_id: uuid.UUID
    weight: float = Field(1.0, gt=0)


class CompletionTrainingParametersIn(BaseModel):
    training_steps: int | None = Field(None, ge=1)
    learning_rate: float = Field(0.0001, ge=1e-8, le=1)
    weight_decay: float | None = Field(0.1, ge=0, le=1)
    warmup_fraction: float | None = Field(0.05, ge=0, le=1)
    epochs: float | None = Field(None, gt=0)
    seq_len: int | None = Field(None, ge=100)
    fim_ratio: float | None = Field(0.9, ge=0, le=1)


class CreateFineTuningJobRequest(BaseModel):
    model: str
    training_files: list[TrainingFile] = []
    validation_files: list[uuid.UUID] | None = None
    suffix: str | None = Field(None, min_length=1, max_length=18, pattern=r"^[a-zA-Z0-9_-]+$")
    integrations: list[dict[str, Any]] | None = None
    auto_start: bool = True
    invalid_sample_skip_percentage: float = Field(0, ge=0, le=0.5)
    job_type: Literal["completion"] | None = None
    hyperparameters: CompletionTrainingParametersIn
    repositories: list[dict[str, Any]] | None = None
    classifier_targets: list[dict[str, Any]] | None = None


class Control(BaseModel):
    """A control request: unknown keys are refused, so that typos do not pass silently."""

    model_config = ConfigDict(extra="forbid")


class SimBatchJob(Control):
    model: str | None = None
    endpoint: str | None = None
    total_requests: int | None = None
    outcome: str | None = None
    queued_for: float | None = None
    running_for: float | None = None
    created_at: float | None = None
    metadata: dict[str, Any] | None = None
    input_files: list[str] | None = None
    agent_id: str | None = None


class SimFineTuningJob(Control):
    model: str | None = None
    outcome: str | None = None
    queued_for: float | None = None
    validating_for: float | None = None
    validated_for: float | None = None
    running_for: float | None = None
    created_at: float | None = None
    training_files: list[str | dict[str, Any]] | None = None
    validation_files: list[str] | None = None
    hyperparameters: dict[str, Any] | None = None
    suffix: str | None = None
    auto_start: bool | None = None


class SimFile(Control):
    filename: str | None = None
    purpose: str | None = None
    bytes: int | None = None
    sample_type: str | None = None
    source: str | None = None
    num_lines: int | None = None
    created_at: float | None = None
    mimetype: str | None = None


class SimModel(Control):
    root: str | None = None
    id: str | None = None
    job: str | None = None
    created_at: float | None = None


class SimBulk(Control):
    batch_jobs: int = 0
    fine_tuning_jobs: int = 0
    files: int = 0
    status: str = "SUCCESS"
    span: float | None = None


class SimOrder(Control):
    files: str


class SimAdvance(Control):
    status: str | None = None


class SimClock(Control):
    advance: float


class SimFault(Control):
    kind: str
    match: dict[str, str] | None = None
    count: int = 1
    status: int | None = None
    body: Any = None
    headers: dict[str, str] | None = None
    seconds: float | None = None
    drop: int | None = None


class SimActivity(Control):
    enabled: bool
    every: float | None = None


Q = TypeVar("Q", bound=Query)
B = TypeVar("B", bound=BaseModel)

_UUID: TypeAdapter[uuid.UUID] = TypeAdapter(uuid.UUID)
_PURPOSE: TypeAdapter[FilePurpose] = TypeAdapter(FilePurpose)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def _detail(error: ValidationError, *where: str | int) -> list[dict[str, Any]]:
    detail = []
    for err in error.errors(include_url=False):
        item: dict[str, Any] = {
            "type": err["type"],
            "loc": [*where, *err["loc"]],
            "msg": err["msg"],
            "input": _plain(err["input"]),
        }
        if "ctx" in err:
            item["ctx"] = _plain(err["ctx"])
        detail.append(item)
    return detail


def parse_query(model: type[Q], params: QueryParams) -> Q:
    """The query parameters of a request, validated by ``model``."""
    data: dict[str, Any] = {}
    for name in model.model_fields:
        values = params.getlist(name)
        if values:
            data[name] = values if name in model.repeated else values[-1]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise Unprocessable(_detail(e, "query")) from None


def parse_body(model: type[B], raw: bytes, *, required: bool = True) -> B:
    """A JSON request body validated by ``model``; an empty body is ``{}`` unless required."""
    if not raw.strip():
        if required:
            missing = {"type": "missing", "loc": ["body"], "msg": "Field required", "input": None}
            raise Unprocessable([missing])
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        pos = e.pos if isinstance(e, json.JSONDecodeError) else e.start
        reason = e.msg if isinstance(e, json.JSONDecodeError) else e.reason
        raise Unprocessable(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", pos],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": reason},
                }
            ]
        ) from None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise Unprocessable(_detail(e, "body")) from None


def path_uuid(value: str, name: str) -> str:
    """A path parameter that must be a UUID, in its canonical form."""
    try:
        return str(_UUID.validate_python(value))
    except ValidationError as e:
        raise Unprocessable(_detail(e, "path", name)) from None


def file_purpose(value: str) -> str:
    """The ``purpose`` field of an upload."""
    try:
        return _PURPOSE.validate_python(value)
    except ValidationError as e:
        raise Unprocessable(_detail(e, "body", "purpose")) from None


def unix(moment: dt.datetime | None) -> float | None:
    """Unix seconds of a query date-time; one without a zone is taken as UTC."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()
