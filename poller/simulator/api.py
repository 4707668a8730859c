"""The ``/v1`` routes: Mistral's batch, fine-tuning, files and models endpoints.

Paths use ``{id}`` for every identifier so that request stats read
``GET /v1/batch/jobs/{id}`` whatever the spec names the parameter.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.simulator import multipart, schemas
from poller.simulator.errors import Unprocessable
from poller.simulator.state import Simulator


def routes(sim: Simulator) -> list[Route]:
    """The API's routes, answering from ``sim``."""

    async def list_batch_jobs(request: Request) -> Response:
        q = schemas.parse_query(schemas.BatchJobsQuery, request.query_params)
        return JSONResponse(
            sim.list_batch_jobs(
                page=q.page,
                page_size=q.page_size,
                status=q.status,
                created_after=schemas.unix(q.created_after),
                order_by=q.order_by,
                model=q.model,
                agent_id=q.agent_id,
            )
        )

    async def create_batch_job(request: Request) -> Response:
        body = schemas.parse_body(schemas.CreateBatchJobRequest, await request.body())
        inputs = [str(f) for f in body.input_files or ()]
        return JSONResponse(
            sim.create_batch_job(
                model=body.model,
                endpoint=body.endpoint,
                input_files=inputs,
                total_requests=len(body.requests) if body.requests else None,
                metadata=body.metadata,
                agent_id=body.agent_id,
            )
        )

    async def get_batch_job(request: Request) -> Response:
        schemas.parse_query(schemas.BatchJobQuery, request.query_params)
        return JSONResponse(sim.get_batch_job(_job_id(request)))

    async def delete_batch_job(request: Request) -> Response:
        return JSONResponse(sim.delete_batch_job(_job_id(request)))

    async def cancel_batch_job(request: Request) -> Response:
        return JSONResponse(sim.cancel("batch_jobs", _job_id(request)))

    async def list_fine_tuning_jobs(request: Request) -> Response:
        q = schemas.parse_query(schemas.FineTuningJobsQuery, request.query_params)
        return JSONResponse(
            sim.list_fine_tuning_jobs(
                page=q.page,
                page_size=q.page_size,
                model=q.model,
                created_after=schemas.unix(q.created_after),
                created_before=schemas.unix(q.created_before),
                status=q.status,
                suffix=q.suffix,
            )
        )

    async def create_fine_tuning_job(request: Request) -> Response:
        q = schemas.parse_query(schemas.CreateFineTuningJobQuery, request.query_params)
        body = schemas.parse_body(schemas.CreateFineTuningJobRequest, await request.body())
        job = sim.create_fine_tuning_job(
            model=body.model,
            training_files=[
                {"file_id": str(f.file_id), "weight": f.weight} for f in body.training_files
            ],
            validation_files=[str(f) for f in body.validation_files or ()],
            hyperparameters=body.hyperparameters.model_dump(),
            suffix=body.suffix,
            auto_start=body.auto_start,
        )
        if q.dry_run:
            # a dry run only estimates: answer a LegacyJobMetadata and keep no job
            sim.delete("fine_tuning_jobs", job["id"])
            hyper = job["hyperparameters"]
            return JSONResponse(
                job["metadata"]
                | {
                    "deprecated": True,
                    "details": "",
                    "epochs": hyper.get("epochs"),
                    "training_steps": hyper.get("training_steps"),
                    "object": "job.metadata",
                    "job_type": "completion",
                }
            )
        job.pop("events")
        job.pop("checkpoints")
        return JSONResponse(job)

    async def get_fine_tuning_job(request: Request) -> Response:
        return JSONResponse(sim.get_fine_tuning_job(_job_id(request)))

    async def cancel_fine_tuning_job(request: Request) -> Response:
        return JSONResponse(sim.cancel("fine_tuning_jobs", _job_id(request)))

    async def start_fine_tuning_job(request: Request) -> Response:
        return JSONResponse(sim.start_fine_tuning_job(_job_id(request)))

    async def list_files(request: Request) -> Response:
        q = schemas.parse_query(schemas.FilesQuery, request.query_params)
        return JSONResponse(
            sim.list_files(
                page=q.page,
                page_size=q.page_size,
                purpose=q.purpose,
                sample_type=q.sample_type,
                source=q.source,
                search=q.search,
                mimetypes=q.mimetypes,
                include_total=q.include_total,
            )
        )

    async def upload_file(request: Request) -> Response:
        form = multipart.parse(await request.body(), request.headers.get("content-type", ""))
        upload = form.get("file")
        if upload is None or upload.filename is None:
            missing = {"type": "missing", "loc": ["body", "file"], "msg": "Field required"}
            raise Unprocessable([missing | {"input": None}])
        purpose = form.get("purpose")
        return JSONResponse(
            sim.upload_file(
                upload.filename,
                upload.data,
                purpose=schemas.file_purpose(purpose.data.decode(errors="replace"))
                if purpose
                else "fine-tune",
                mimetype=upload.content_type,
            )
        )

    async def get_file(request: Request) -> Response:
        return JSONResponse(sim.get_file(_file_id(request)))

    async def delete_file(request: Request) -> Response:
        return JSONResponse(sim.delete_file(_file_id(request)))

    async def list_models(request: Request) -> Response:
        return JSONResponse(sim.list_models())

    async def get_model(request: Request) -> Response:
        return JSONResponse(sim.get_model(request.path_params["id"]))

    async def delete_model(request: Request) -> Response:
        return JSONResponse(sim.delete_model(request.path_params["id"]))

    return [
        Route("/v1/batch/jobs", list_batch_jobs, methods=["GET"]),
        Route("/v1/batch/jobs", create_batch_job, methods=["POST"]),
        Route("/v1/batch/jobs/{id}", get_batch_job, methods=["GET"]),
        Route("/v1/batch/jobs/{id}", delete_batch_job, methods=["DELETE"]),
        Route("/v1/batch/jobs/{id}/cancel", cancel_batch_job, methods=["POST"]),
        Route("/v1/fine_tuning/jobs", list_fine_tuning_jobs, methods=["GET"]),
        Route("/v1/fine_tuning/jobs", create_fine_tuning_job, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{id}", get_fine_tuning_job, methods=["GET"]),
        Route("/v1/fine_tuning/jobs/{id}/cancel", cancel_fine_tuning_job, methods=["POST"]),
        Route("/v1/fine_tuning/jobs/{id}/start", start_fine_tuning_job, methods=["POST"]),
        Route("/v1/files", list_files, methods=["GET"]),
        Route("/v1/files", upload_file, methods=["POST"]),
        Route("/v1/files/{id}", get_file, methods=["GET"]),
        Route("/v1/files/{id}", delete_file, methods=["DELETE"]),
        Route("/v1/models", list_models, methods=["GET"]),
        # a model id is free text: ``{id:path}`` keeps a ``/`` in it
        Route("/v1/models/{id:path}", get_model, methods=["GET"]),
        Route("/v1/models/{id:path}", delete_model, methods=["DELETE"]),
    ]


def _job_id(request: Request) -> str:
    return schemas.path_uuid(request.path_params["id"], "job_id")


def _file_id(request: Request) -> str:
    return schemas.path_uuid(request.path_params["id"], "file_id")
