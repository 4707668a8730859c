"""The ``/v1/libraries`` routes and their ``/_sim/libraries`` controls.

Paths use ``{id}`` and ``{document}`` so that request stats read
``GET /v1/libraries/{id}/documents/{document}/status`` whatever the spec names them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from poller.simulator import multipart, schemas
from poller.simulator.errors import Unprocessable
from poller.simulator.libraries import Libraries
from poller.simulator.library_records import MAX_PAGE_SIZE

PageSize = Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)]


class LibrariesQuery(schemas.Query):
    page_size: PageSize = MAX_PAGE_SIZE
    page_token: str | None = None
    page: Annotated[int, Field(ge=0)] | None = None
    search: str | None = None
    filter_owned_by_me: bool | None = None


class CreateLibraryRequest(BaseModel):
    name: str
    description: str | None = None
    chunk_size: Annotated[int, Field(ge=256, le=32768)] | None = None
    owner_type: Literal["User", "Workspace"] | None = None


class DocumentsQuery(schemas.Query):
    search: str | None = None
    page_size: PageSize = MAX_PAGE_SIZE
    page: Annotated[int, Field(ge=0)] = 0
    filters_attributes: str | None = None
    sort_by: str = "created_at"
    sort_order: str = "desc"


class SimLibrary(schemas.Control):
    name: str | None = None
    description: str | None = None
    owner_type: str | None = None
    created_at: float | None = None


class SimDocument(schemas.Control):
    name: str | None = None
    size: int | None = None
    mime_type: str | None = None
    outcome: str | None = None
    queued_for: float | None = None
    processing_for: float | None = None
    created_at: float | None = None


class SimReprocess(schemas.Control):
    outcome: str | None = None
    queued_for: float | None = None
    processing_for: float | None = None


class SimLibrariesBulk(schemas.Control):
    libraries: int = 0
    documents: int = 0
    span: float | None = None


class SimAvailable(schemas.Control):
    available: bool


def _library(request: Request) -> str:
    return schemas.path_uuid(request.path_params["id"], "library_id")


def _document(request: Request) -> tuple[str, str]:
    return _library(request), schemas.path_uuid(request.path_params["document"], "document_id")


def routes(libs: Libraries) -> list[Route]:
    """The API's library routes, answering from ``libs``."""

    async def list_libraries(request: Request) -> Response:
        q = schemas.parse_query(LibrariesQuery, request.query_params)
        return JSONResponse(
            libs.list_libraries(
                page_size=q.page_size, page_token=q.page_token, page=q.page, search=q.search
            )
        )

    async def create_library(request: Request) -> Response:
        body = schemas.parse_body(CreateLibraryRequest, await request.body())
        created = libs.create_library(
            name=body.name, description=body.description, owner_type=body.owner_type
        )
        return JSONResponse(created, status_code=201)

    async def get_library(request: Request) -> Response:
        return JSONResponse(libs.get_library(_library(request)))

    async def delete_library(request: Request) -> Response:
        return JSONResponse(libs.delete_library(_library(request)))

    async def list_documents(request: Request) -> Response:
        library_id = _library(request)
        q = schemas.parse_query(DocumentsQuery, request.query_params)
        return JSONResponse(
            libs.list_documents(
                library_id,
                page=q.page,
                page_size=q.page_size,
                search=q.search,
                sort_by=q.sort_by,
                sort_order=q.sort_order,
            )
        )

    async def upload(request: Request) -> Response:
        library_id = _library(request)
        form = multipart.parse(await request.body(), request.headers.get("content-type", ""))
        part = form.get("file")
        if part is None or part.filename is None:
            missing = {"type": "missing", "loc": ["body", "file"], "msg": "Field required"}
            raise Unprocessable([missing | {"input": None}])
        document, created = libs.upload_document(
            library_id, part.filename, part.data, mime_type=part.content_type
        )
        return JSONResponse(document, status_code=201 if created else 200)

    async def get_document(request: Request) -> Response:
        return JSONResponse(libs.get_document(*_document(request)))

    async def delete_document(request: Request) -> Response:
        libs.delete_document(*_document(request))
        return Response(status_code=204)

    async def status(request: Request) -> Response:
        return JSONResponse(libs.document_status(*_document(request)))

    async def reprocess(request: Request) -> Response:
        libs.reprocess_document(*_document(request))
        return Response(status_code=204)

    documents = "/v1/libraries/{id}/documents"
    one = documents + "/{document}"
    return [
        Route("/v1/libraries", list_libraries, methods=["GET"]),
        Route("/v1/libraries", create_library, methods=["POST"]),
        Route("/v1/libraries/{id}", get_library, methods=["GET"]),
        Route("/v1/libraries/{id}", delete_library, methods=["DELETE"]),
        Route(documents, list_documents, methods=["GET"]),
        Route(documents, upload, methods=["POST"]),
        Route(one, get_document, methods=["GET"]),
        Route(one, delete_document, methods=["DELETE"]),
        Route(one + "/status", status, methods=["GET"]),
        Route(one + "/reprocess", reprocess, methods=["POST"]),
    ]


async def _args(request: Request, model: type[BaseModel]) -> dict[str, Any]:
    body = schemas.parse_body(model, await request.body(), required=False)
    return body.model_dump(exclude_unset=True)


def control_routes(libs: Libraries) -> list[Route]:
    """The ``/_sim/libraries`` controls (never counted, never authenticated)."""

    async def overview(request: Request) -> Response:
        return JSONResponse({**libs.library_counts(), "available": libs.libraries_available})

    async def create_library(request: Request) -> Response:
        return JSONResponse(libs.create_library(**await _args(request, SimLibrary)))

    async def bulk(request: Request) -> Response:
        return JSONResponse(libs.bulk_libraries(**await _args(request, SimLibrariesBulk)))

    async def available(request: Request) -> Response:
        body = schemas.parse_body(SimAvailable, await request.body())
        return JSONResponse(libs.set_libraries_available(body.available))

    async def add_document(request: Request) -> Response:
        args = await _args(request, SimDocument)
        return JSONResponse(libs.add_document(request.path_params["id"], **args))

    async def advance(request: Request) -> Response:
        args = await _args(request, schemas.SimAdvance)
        library_id, document = request.path_params["id"], request.path_params["document"]
        return JSONResponse(libs.advance_document(library_id, document, args.get("status")))

    async def reprocess(request: Request) -> Response:
        args = await _args(request, SimReprocess)
        library_id, document = request.path_params["id"], request.path_params["document"]
        libs.reprocess_document(library_id, document, **args)
        return JSONResponse(libs.get_document(library_id, document))

    async def delete_library(request: Request) -> Response:
        return JSONResponse(libs.delete_library(request.path_params["id"]))

    async def delete_document(request: Request) -> Response:
        libs.delete_document(request.path_params["id"], request.path_params["document"])
        return JSONResponse({"id": request.path_params["document"], "deleted": True})

    one = "/_sim/libraries/{id}/documents/{document}"
    return [
        Route("/_sim/libraries", overview, methods=["GET"]),
        Route("/_sim/libraries", create_library, methods=["POST"]),
        Route("/_sim/libraries/bulk", bulk, methods=["POST"]),
        Route("/_sim/libraries/available", available, methods=["POST"]),
        Route("/_sim/libraries/{id}", delete_library, methods=["DELETE"]),
        Route("/_sim/libraries/{id}/documents", add_document, methods=["POST"]),
        Route(one, delete_document, methods=["DELETE"]),
        Route(one + "/advance", advance, methods=["POST"]),
        Route(one + "/reprocess", reprocess, methods=["POST"]),
    ]
