"""The answers routes give, built from stored documents: the upload's `202`, a status page (with
the products a worker holds shown as processing), the processing log's page. The routes ask the
store and hand what they got here; this module and shared/views.py are where a view names fields."""

import logging
from datetime import datetime

from fastapi.responses import JSONResponse
from redis.exceptions import RedisError

from api_service.processing_log import ImageLogPage, product_entries
from api_service.schemas import UploadAccepted
from api_service.state import AppState
from shared.models import ProductStatus, QueuePlace, RequestStatus, utcnow
from shared.store import product_claims, requests
from shared.store.operations import AsyncStore
from shared.store.product_claims import LoggedClaim
from shared.store.requests import ProductDocument, RequestDocument, RequestSummary
from shared.views import status_view

DEFAULT_PAGE = 100
log = logging.getLogger("api.answers")


def accepted(state: AppState, document: RequestSummary) -> JSONResponse:
    request_id = document["_id"]
    body = UploadAccepted(
        request_id=request_id,
        status=RequestStatus(document["status"]),
        status_url=state.status_url(request_id),
        download_url=state.download_url(request_id),
        products=document["products_total"],
        images=document["images_total"],
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202)


def status_json(state: AppState, document: RequestDocument, place: QueuePlace | None = None) -> bytes:
    view = status_view(document, state.storage, state.download_url(document["_id"]), place)
    return view.model_dump_json().encode()


async def queue_place(state: AppState, document: RequestDocument) -> QueuePlace | None:
    """Where an unfinished request stands in the workers' turns; None once nothing of it waits, or
    while Redis does not answer (the status needs it for nothing else)."""
    if RequestStatus(document["status"]).is_final:
        return None
    try:
        place = await state.fair_queue.place(document.get("owner"), document["_id"])
    except RedisError as error:
        log.info("queue place of %s unknown: %s", document["_id"], error)
        return None
    if not place.products_waiting:
        return None
    return QueuePlace(products_waiting=place.products_waiting, products_ahead=place.products_ahead)


async def show_busy_products(store: AsyncStore, document: RequestDocument, offset: int) -> None:
    """Show as processing the pending products of this page that a worker holds or has just finished.

    Workers record progress in small claim documents and merge it into the request document in
    batches, so the request document alone would show them as pending.
    """
    if document["status"] != RequestStatus.PROCESSING:
        return
    products = document["products"]
    pending = [offset + i for i, product in enumerate(products) if product["status"] == ProductStatus.PENDING]
    if pending:
        for index in await store.run(product_claims.busy_products(document["_id"], pending, utcnow())):
            products[index - offset]["status"] = ProductStatus.PROCESSING.value


async def status_page(state: AppState, request_id: str, owner: str | None, offset: int, limit: int) -> bytes | None:
    """The status answer with a page of the products, as the caller may see it; None if not found."""
    document = await state.store.run(requests.find_page(request_id, owner, offset, limit))
    if document is None:
        return None
    await show_busy_products(state.store, document, offset)
    return status_json(state, document, await queue_place(state, document))


def seed_first_page(state: AppState, document: RequestDocument) -> None:
    """A new request's first page is known at upload: pollers that come at once need no read."""
    first_page = document.copy()
    first_page["products"] = document["products"][:DEFAULT_PAGE]
    key = (document["_id"], 0, DEFAULT_PAGE, document.get("owner"))
    state.status_cache.put(key, status_json(state, first_page))


def image_log_page(
    state: AppState,
    summary: RequestSummary,
    window: tuple[int, int],
    page: list[tuple[int, ProductDocument, range]],
    claims: dict[int, LoggedClaim],
    now: datetime,
) -> ImageLogPage:
    """The processing log's page of images `offset` to `offset + limit` (`window`)."""
    offset, limit = window
    return ImageLogPage(
        request_id=summary["_id"],
        images_total=summary["images_total"],
        offset=offset,
        limit=limit,
        images=[
            entry
            for index, product, positions in page
            for entry in product_entries(product, positions, claims.get(index), state.storage, now)
        ],
    )
