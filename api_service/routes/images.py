"""GET /api/v1/status/{request_id}/images: the processing log, a page of images at a time."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api_service import answers
from api_service.auth import Owner
from api_service.errors import ApiError
from api_service.processing_log import NOT_MEASURED, ImageLogPage, products_on_page
from api_service.request_products import every_product
from api_service.schemas import EXAMPLE_ID, MAX_OFFSET, error_responses
from api_service.state import AppState, services
from shared.models import utcnow
from shared.store import product_claims, requests

router = APIRouter()

IMAGE_LOG_EXAMPLE = {
    "request_id": EXAMPLE_ID,
    "images_total": 3,
    "offset": 0,
    "limit": 100,
    "images": [
        {
            "serial_number": 1,
            "position": 0,
            "input_url": "https://img.example.com/a.jpg",
            "status": "completed",
            "attempts": 1,
            "output_url": f"http://127.0.0.1:8000/media/{EXAMPLE_ID}/1-0.jpg",
            "error": None,
            "format": "JPEG",
            "width": 1600,
            "height": 1200,
            "bytes_in": 482113,
            "bytes_out": 141802,
            "download_ms": 84.2,
            "compress_ms": 61.7,
            "store_ms": 3.1,
            "finished_at": "2026-11-21T10:00:01.532Z",
        },
        {
            **NOT_MEASURED,
            "serial_number": 1,
            "position": 1,
            "input_url": "https://img.example.com/b.jpg",
            "status": "failed",
            "attempts": 1,
            "output_url": None,
            "error": "HTTP 404",
            "download_ms": 12.9,
            "finished_at": "2026-11-21T10:00:01.050Z",
        },
        {
            **NOT_MEASURED,
            "serial_number": 2,
            "position": 0,
            "input_url": "https://img.example.com/c.png",
            "status": "processing",
            "output_url": None,
            "error": None,
        },
    ],
}


@router.get(
    "/api/v1/status/{request_id}/images",
    response_model=ImageLogPage,
    responses={
        200: {"content": {"application/json": {"example": IMAGE_LOG_EXAMPLE}}},
        **error_responses(404, 422, 503),
    },
    summary="Processing log: each image's outcome, sizes and timings",
    tags=["requests"],
)
async def processing_log(
    request_id: str,
    state: Annotated[AppState, Depends(services)],
    owner: Owner,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="first image to list, in serial and position order")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="images to list")] = 100,
) -> ImageLogPage:
    """One entry per image in serial and position order; null where not known yet."""
    summary = await state.store.run(requests.find_summary(request_id, owner))
    if summary is None:
        raise ApiError(404, "request not found")
    page = await products_on_page(every_product(state.store, request_id), offset, limit)
    claims = await state.store.run(product_claims.of_products(request_id, [index for index, _, _ in page]))
    return answers.image_log_page(state, summary, (offset, limit), page, claims, utcnow())
