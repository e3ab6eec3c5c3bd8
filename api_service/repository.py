"""The API's reads and writes of request documents (PyMongo's async API)."""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from shared.db import claim_id, has_live_lease
from shared.models import ProductStatus, utcnow

WITHOUT_PRODUCTS = {"products": 0}
PRODUCT_BATCH = 500


async def insert_request(requests: AsyncCollection[dict[str, Any]], document: dict[str, Any]) -> None:
    await requests.insert_one(document)


async def find_by_idempotency_key(requests: AsyncCollection[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return await requests.find_one({"idempotency_key": key}, WITHOUT_PRODUCTS)


def request_filter(request_id: str, owner: str | None) -> dict[str, Any]:
    """The query for one request as its caller may see it: with API keys on (`owner`, the
    caller's digest from api_service.auth), only a request that caller created matches, so
    another key's request reads as not found. Use it for every read or change of a request."""
    return {"_id": request_id} if owner is None else {"_id": request_id, "owner": owner}


async def find_summary(
    requests: AsyncCollection[dict[str, Any]], request_id: str, *, owner: str | None
) -> dict[str, Any] | None:
    return await requests.find_one(request_filter(request_id, owner), WITHOUT_PRODUCTS)


async def find_page(
    requests: AsyncCollection[dict[str, Any]], request_id: str, offset: int, limit: int, *, owner: str | None
) -> dict[str, Any] | None:
    return await requests.find_one(request_filter(request_id, owner), {"products": {"$slice": [offset, limit]}})


async def mark_products_in_progress(
    claims: AsyncCollection[dict[str, Any]], document: dict[str, Any], offset: int
) -> None:
    """Show as processing the pending products of this page that a worker holds or has just finished.

    Workers record progress in small claim documents and merge it into the request
    document in batches, so the request document alone would show them as pending.
    """
    pending = {offset + i: p for i, p in enumerate(document["products"]) if p["status"] == ProductStatus.PENDING}
    if not pending or document["status"] != "processing":
        return
    ids = [claim_id(document["_id"], index) for index in pending]
    now = utcnow()
    # Decided here rather than by an $or in the query, which makes the embedded server scan
    # every claim instead of looking these up by `_id` (see shared.db.no_live_lease).
    async for claim in claims.find({"_id": {"$in": ids}}, {"index": 1, "done": 1, "merged": 1, "lease_expires_at": 1}):
        if is_busy(claim, now):
            pending[claim["index"]]["status"] = ProductStatus.PROCESSING.value


def is_busy(claim: dict[str, Any], now: datetime) -> bool:
    """Held by a live lease, or done with its result not yet merged into the request document."""
    return not claim["merged"] if claim["done"] else has_live_lease(claim, now)


async def iterate_products(requests: AsyncCollection[dict[str, Any]], request_id: str) -> AsyncIterator[dict[str, Any]]:
    """Every product in serial order, read a batch at a time so a large request is never held whole."""
    offset = 0
    while True:
        page = await requests.find_one(
            {"_id": request_id},
            {"products": {"$slice": [offset, PRODUCT_BATCH]}, "products_total": 1},
        )
        products = page["products"] if page else []
        for product in products:
            yield product
        offset += len(products)
        if len(products) < PRODUCT_BATCH:
            return


async def replace_webhook(
    requests: AsyncCollection[dict[str, Any]], request_id: str, webhook: dict[str, Any], *, owner: str | None
) -> dict[str, Any] | None:
    """Set the request's webhook; returns the request (without products) after the change."""
    return await requests.find_one_and_update(
        request_filter(request_id, owner),
        {"$set": {"webhook": webhook, "updated_at": utcnow()}},
        projection=WITHOUT_PRODUCTS,
        return_document=ReturnDocument.AFTER,
    )


async def find_claims(
    claims: AsyncCollection[dict[str, Any]], request_id: str, indexes: list[int]
) -> dict[int, dict[str, Any]]:
    """The claim documents of these products of the request, by product index (unclaimed ones absent)."""
    ids = [claim_id(request_id, index) for index in indexes]
    return {claim["index"]: claim async for claim in claims.find({"_id": {"$in": ids}})}
