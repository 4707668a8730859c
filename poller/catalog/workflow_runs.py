"""The workflow-run event types (``workflow_runs`` source).

Mistral's OpenAPI: WorkflowExecutionWithoutResultResponse, the items of
``GET /v1/workflows/runs``; WorkflowExecutionStatus. A run is one run of an execution: a
run that continues as new ends, and the next run of the same ``execution_id`` starts.
"""

from __future__ import annotations

from poller.catalog.base import DATE_TIME, EventType, one_of
from poller.catalog.base import field as _f
from poller.catalog.base import json_type as _t

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
_RUN_START = _f("start_time", schema=DATE_TIME, description="When the run started.")


def _run_outcome(action: str, status: str, when: str) -> EventType:
    return EventType(
        f"workflow_run.{action}",
        f"A workflow run {when} (status {status}).",
        (
            *_RUN_IDS,
            _f(
                "status",
                schema=one_of(status),
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


TYPES = (
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
