"""The ``/_sim`` routes: drive the simulator over HTTP (never counted, never authenticated).

Each route calls the ``Simulator`` method of the same name with the JSON body's
keys as arguments; keys a request leaves out keep the method's defaults.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.simulator import schemas
from poller.simulator.state import KINDS, Simulator


async def body_args(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    body = schemas.parse_body(model, await request.body(), required=False)
    return body.model_dump(exclude_unset=True)


def routes(sim: Simulator) -> list[Route]:
    """The control API's routes, acting on ``sim``."""

    async def overview(request: Request) -> Response:
        return JSONResponse(
            {
                "now": sim.now(),
                "counts": sim.counts(),
                "activity": sim.activity(),
                "faults": sim.faults(),
                "fine_tuning": sim.fine_tuning,
                "auth": sim.api_key is not None,
                "kinds": list(KINDS),
            }
        )

    async def reset(request: Request) -> Response:
        return JSONResponse(sim.reset())

    async def create_batch_job(request: Request) -> Response:
        return JSONResponse(sim.create_batch_job(**await body_args(request, schemas.SimBatchJob)))

    async def create_fine_tuning_job(request: Request) -> Response:
        args = await body_args(request, schemas.SimFineTuningJob)
        return JSONResponse(sim.create_fine_tuning_job(**args))

    async def create_file(request: Request) -> Response:
        return JSONResponse(sim.create_file(**await body_args(request, schemas.SimFile)))

    async def create_model(request: Request) -> Response:
        return JSONResponse(sim.create_model(**await body_args(request, schemas.SimModel)))

    async def bulk(request: Request) -> Response:
        return JSONResponse(sim.bulk(**await body_args(request, schemas.SimBulk)))

    async def get_order(request: Request) -> Response:
        return JSONResponse({"files": sim.files_order})

    async def set_order(request: Request) -> Response:
        body = schemas.parse_body(schemas.SimOrder, await request.body())
        return JSONResponse(sim.set_files_order(body.files))

    async def advance(request: Request) -> Response:
        args = await body_args(request, schemas.SimAdvance)
        kind, id = request.path_params["kind"], request.path_params["id"]
        return JSONResponse(sim.advance(kind, id, args.get("status")))

    async def cancel(request: Request) -> Response:
        return JSONResponse(sim.cancel(request.path_params["kind"], request.path_params["id"]))

    async def delete(request: Request) -> Response:
        return JSONResponse(sim.delete(request.path_params["kind"], request.path_params["id"]))

    async def get_clock(request: Request) -> Response:
        return JSONResponse({"now": sim.now()})

    async def move_clock(request: Request) -> Response:
        body = schemas.parse_body(schemas.SimClock, await request.body())
        return JSONResponse(sim.advance_clock(body.advance))

    async def list_faults(request: Request) -> Response:
        return JSONResponse(sim.faults())

    async def add_fault(request: Request) -> Response:
        body = schemas.parse_body(schemas.SimFault, await request.body())
        return JSONResponse(sim.add_fault(**body.model_dump(exclude_unset=True)))

    async def clear_faults(request: Request) -> Response:
        return JSONResponse(sim.clear_faults())

    async def stats(request: Request) -> Response:
        return JSONResponse(sim.stats())

    async def reset_stats(request: Request) -> Response:
        return JSONResponse(sim.reset_stats())

    async def get_activity(request: Request) -> Response:
        return JSONResponse(sim.activity())

    async def set_activity(request: Request) -> Response:
        body = schemas.parse_body(schemas.SimActivity, await request.body())
        return JSONResponse(sim.set_activity(body.enabled, body.every))

    return [
        Route("/_sim", overview, methods=["GET"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/batch_jobs", create_batch_job, methods=["POST"]),
        Route("/_sim/fine_tuning_jobs", create_fine_tuning_job, methods=["POST"]),
        Route("/_sim/files", create_file, methods=["POST"]),
        Route("/_sim/models", create_model, methods=["POST"]),
        Route("/_sim/bulk", bulk, methods=["POST"]),
        Route("/_sim/order", get_order, methods=["GET"]),
        Route("/_sim/order", set_order, methods=["POST"]),
        Route("/_sim/clock", get_clock, methods=["GET"]),
        Route("/_sim/clock", move_clock, methods=["POST"]),
        Route("/_sim/faults", list_faults, methods=["GET"]),
        Route("/_sim/faults", add_fault, methods=["POST"]),
        Route("/_sim/faults", clear_faults, methods=["DELETE"]),
        Route("/_sim/stats", stats, methods=["GET"]),
        Route("/_sim/stats/reset", reset_stats, methods=["POST"]),
        Route("/_sim/activity", get_activity, methods=["GET"]),
        Route("/_sim/activity", set_activity, methods=["POST"]),
        Route("/_sim/{kind}/{id}/advance", advance, methods=["POST"]),
        Route("/_sim/{kind}/{id}/cancel", cancel, methods=["POST"]),
        Route("/_sim/{kind}/{id}", delete, methods=["DELETE"]),
    ]
