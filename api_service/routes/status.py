"""GET /api/v1/status/{request_id}: progress and products, a page at a time."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from structlog.contextvars import bind_contextvars

from api_service import answers
from api_service.answers import DEFAULT_PAGE
from api_service.auth import Owner
from api_service.errors import ApiError
from api_service.schemas import EXAMPLE_ID, MAX_OFFSET, error_responses, request_links
from api_service.state import AppState, services
from shared.models import StatusView

router = APIRouter()

STATUS_EXAMPLE = {
    "request_id": EXAMPLE_ID,
    "status": "processing",
    "progress": {
        "percentage": 66.7,
        "products_total": 2,
        "products_done": 1,
        "images_total": 3,
        "images_done": 2,
        "images_failed": 1,
        "bytes_in": 481230,
        "bytes_out": 152811,
    },
    "created_at": "2026-11-21T10:00:00Z",
    "updated_at": "2026-11-21T10:00:02Z",
    "completed_at": None,
    "download_url": f"http://127.0.0.1:8000/api/v1/download/{EXAMPLE_ID}",
    "webhook": {
        "url": "https://shop.example.com/hooks/images",
        "state": "pending",
        "attempts": 0,
        "last_status_code": None,
    },
    "products": [
        {
            "serial_number": 1,
            "product_name": "SKU1",
            "status": "completed",
            "input_image_urls": ["https://img.example.com/a.jpg", "https://img.example.com/b.jpg"],
            "output_image_urls": [f"http://127.0.0.1:8000/media/{EXAMPLE_ID}/1-0.jpg", None],
            "errors": [{"url": "https://img.example.com/b.jpg", "message": "HTTP 404"}],
        },
        {
            "serial_number": 2,
            "product_name": "SKU2",
            "status": "processing",
            "input_image_urls": ["https://img.example.com/c.png"],
            "output_image_urls": [None],
            "errors": [],
        },
    ],
}


DEFAULT_LIMIT = DEFAULT_PAGE


async def request_status(
    request_id: str,
    state: Annotated[AppState, Depends(services)],
    owner: Owner,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="first product to list, in serial order")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="products to list")] = DEFAULT_LIMIT,
) -> Response:
    """The request's state, progress and a page of its products in serial order."""
    bind_contextvars(request_id=request_id)

    async def load() -> bytes | None:
        return await answers.status_page(state, request_id, owner, offset, limit)

    # Cached per caller: another key's answer (its 404 included) is never served to this one.
    body = await state.status_cache.get((request_id, offset, limit, owner), load)
    if body is None:
        raise ApiError(404, "request not found")
    return Response(body, media_type="application/json")


router.add_api_route(
    "/api/v1/status/{request_id}",
    request_status,
    methods=["GET"],
    response_model=StatusView,
    responses={
        200: {"content": {"application/json": {"example": STATUS_EXAMPLE}}, "links": request_links("/request_id")},
        **error_responses(404, 422, 503),
    },
    summary="Status and progress of a request",
    tags=["requests"],
)
for alias in ("/api/status/{request_id}", "/status/{request_id}", "/status/{request_id}/"):
    router.add_api_route(alias, request_status, methods=["GET"], response_model=StatusView, include_in_schema=False)
