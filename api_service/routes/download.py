"""GET /api/v1/download/{request_id}: the output CSV, once the request is finished."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from structlog.contextvars import bind_contextvars

from api_service.auth import Owner
from api_service.errors import ApiError
from api_service.output_csv import output_csv
from api_service.request_products import every_product
from api_service.schemas import error_responses
from api_service.state import AppState, services
from shared.store import requests

router = APIRouter()

CSV_EXAMPLE = (
    "S. No.,Product Name,Input Image Urls,Output Image Urls\r\n"
    '1,SKU1,"https://img.example.com/a.jpg,https://img.example.com/b.jpg",'
    '"http://127.0.0.1:8000/media/3f2c8a9e-5b1d-4c7e-9a2f-6d8e0b1c2a3f/1-0.jpg,"\r\n'
)


async def download_csv(
    request_id: str, state: Annotated[AppState, Depends(services)], owner: Owner
) -> StreamingResponse:
    """One row per product in serial order; an empty slot where an image failed."""
    bind_contextvars(request_id=request_id)
    summary = await state.store.run(requests.find_summary(request_id, owner))
    if summary is None:
        raise ApiError(404, "request not found")
    status = requests.status_of(summary)
    if not status.is_final:
        raise ApiError(409, f"the request is {status.value}; the output CSV is ready once it is finished")
    rows = output_csv(every_product(state.store, request_id), state.storage)
    return StreamingResponse(
        rows,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{request_id}.csv"'},
    )


router.add_api_route(
    "/api/v1/download/{request_id}",
    download_csv,
    methods=["GET"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"example": CSV_EXAMPLE}}}, **error_responses(404, 409, 503)},
    summary="Download the output CSV",
    tags=["requests"],
)
for alias in ("/api/download/{request_id}", "/output_csv/{request_id}", "/export/{request_id}/"):
    router.add_api_route(alias, download_csv, methods=["GET"], include_in_schema=False)
