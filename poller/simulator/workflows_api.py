"""The workflow-run routes: ``/v1/workflows/...`` answering from ``Workflows``, and their
``/_sim/workflow_runs`` controls.

Paths use ``{id}`` for every identifier, as ``api`` does, so that request stats read
``GET /v1/workflows/runs/{id}`` whatever the spec names the parameter.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.simulator import schemas
from poller.simulator.control import body_args
from poller.simulator.schemas import Control, Query
from poller.simulator.workflows import Workflows

WorkflowExecutionStatus = Literal[
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELED",
    "TERMINATED",
    "CONTINUED_AS_NEW",
    "TIMED_OUT",
    "RETRYING_AFTER_ERROR",
]
SearchKey = Annotated[str, StringConstraints(pattern=r"^[^:]+:.+$")]


class RunsQuery(Query):
    repeated = frozenset({"status", "workflow_tags", "search_key"})
    workflow_identifier: str | None = None
    root_execution_id: str | None = None
    search: str | None = None
    status: list[WorkflowExecutionStatus] | None = None
    deployment_name: str | None = None
    sort_by: Literal["start_time", "end_time"] | None = None
    order: Literal["asc", "desc"] = "desc"
    start_time_after: dt.datetime | None = None
    start_time_before: dt.datetime | None = None
    end_time_after: dt.datetime | None = None
    end_time_before: dt.datetime | None = None
    user_id: str | None = None
    workflow_tags: Annotated[list[str], Field(max_length=20)] | None = None
    include_internal: bool = True
    page_size: int = Field(50, ge=1, le=1000)
    next_page_token: str | None = None
    search_key: Annotated[list[SearchKey], Field(max_length=3)] | None = None


class WorkflowExecutionRequest(BaseModel):
    execution_id: Annotated[str, StringConstraints(max_length=256)] | None = None
    input: dict[str, Any] | None = None
    wait_for_result: bool = False
    timeout_seconds: float | None = None
    custom_tracing_attributes: dict[str, str] | None = None
    force_new_trace: bool = False
    extensions: dict[str, Any] | None = None
    task_queue: str | None = None
    deployment_name: str | None = None


class SimWorkflowRun(Control):
    workflow_name: str | None = None
    outcome: str | None = None
    running_for: float | None = None
    retrying_at: float | None = None
    continues: int | None = None
    start_time: float | None = None
    execution_id: str | None = None
    parent_execution_id: str | None = None
    internal: bool | None = None
    deployment_name: str | None = None
    user_id: str | None = None


class SimRunAdvance(Control):
    status: str | None = None
    at: float | None = None


class SimRunBulk(Control):
    count: int
    status: str | None = None
    span: float | None = None


def routes(workflows: Workflows) -> list[Route]:
    """The ``/v1/workflows`` routes poller and its simulator's clients use."""

    async def list_runs(request: Request) -> Response:
        q = schemas.parse_query(RunsQuery, request.query_params)
        return JSONResponse(
            workflows.list_runs(
                page_size=q.page_size,
                next_page_token=q.next_page_token,
                workflow_identifier=q.workflow_identifier,
                root_execution_id=q.root_execution_id,
                search=q.search,
                status=q.status,
                deployment_name=q.deployment_name,
                sort_by=q.sort_by,
                order=q.order,
                start_time_after=schemas.unix(q.start_time_after),
                start_time_before=schemas.unix(q.start_time_before),
                end_time_after=schemas.unix(q.end_time_after),
                end_time_before=schemas.unix(q.end_time_before),
                user_id=q.user_id,
                workflow_tags=q.workflow_tags,
                include_internal=q.include_internal,
                search_key=q.search_key,
            )
        )

    async def get_run(request: Request) -> Response:
        run_id = schemas.path_uuid(request.path_params["id"], "run_id")
        return JSONResponse(workflows.get_run(run_id))

    async def get_execution(request: Request) -> Response:
        return JSONResponse(workflows.get_execution(request.path_params["id"]))

    async def execute(request: Request) -> Response:
        body = schemas.parse_body(WorkflowExecutionRequest, await request.body())
        return JSONResponse(workflows.execute(request.path_params["id"], **_options(body)))

    async def execute_registration(request: Request) -> Response:
        registration = schemas.path_uuid(request.path_params["id"], "workflow_registration_id")
        body = schemas.parse_body(WorkflowExecutionRequest, await request.body())
        return JSONResponse(workflows.execute_registration(registration, **_options(body)))

    async def cancel(request: Request) -> Response:
        workflows.cancel(request.path_params["id"])
        return Response(status_code=204)

    async def terminate(request: Request) -> Response:
        workflows.terminate(request.path_params["id"])
        return Response(status_code=204)

    return [
        Route("/v1/workflows/runs", list_runs, methods=["GET"]),
        Route("/v1/workflows/runs/{id}", get_run, methods=["GET"]),
        Route("/v1/workflows/executions/{id}", get_execution, methods=["GET"]),
        Route("/v1/workflows/executions/{id}/cancel", cancel, methods=["POST"]),
        Route("/v1/workflows/executions/{id}/terminate", terminate, methods=["POST"]),
        Route("/v1/workflows/registrations/{id}/execute", execute_registration, methods=["POST"]),
        Route("/v1/workflows/{id}/execute", execute, methods=["POST"]),
    ]


def _options(body: WorkflowExecutionRequest) -> dict[str, Any]:
    return {
        "execution_id": body.execution_id,
        "input": body.input,
        "wait_for_result": body.wait_for_result,
        "deployment_name": body.deployment_name or body.task_queue,
    }


def control_routes(workflows: Workflows) -> list[Route]:
    """``/_sim/workflow_runs``: start runs, move them, seed many at once."""

    async def create(request: Request) -> Response:
        args = await body_args(request, SimWorkflowRun)
        return JSONResponse(workflows.create_run(**args))

    async def bulk(request: Request) -> Response:
        return JSONResponse(workflows.bulk(**await body_args(request, SimRunBulk)))

    async def advance(request: Request) -> Response:
        args = await body_args(request, SimRunAdvance)
        return JSONResponse(workflows.advance(request.path_params["id"], **args))

    async def expire(request: Request) -> Response:
        return JSONResponse(workflows.expire(request.path_params["id"]))

    async def registered(request: Request) -> Response:
        return JSONResponse(list(workflows.registered()))

    return [
        Route("/_sim/workflow_runs", create, methods=["POST"]),
        Route("/_sim/workflow_runs/bulk", bulk, methods=["POST"]),
        Route("/_sim/workflow_runs/{id}/advance", advance, methods=["POST"]),
        Route("/_sim/workflow_runs/{id}", expire, methods=["DELETE"]),
        Route("/_sim/workflows", registered, methods=["GET"]),
    ]
