"""The API's reads and writes of request documents (PyMongo's async API)."""

from collections.abc import AsyncIterator
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection

from shared.documents import utcnow

WITHOUT_PRODUCTS = {"products": 0}
PRODUCT_BATCH = 500


async def insert_request(requests: AsyncCollection, document: dict[str, Any]) -> None:
    await requests.insert_one(document)


async def find_by_idempotency_key(requests: AsyncCollection, key: str) -> dict[str, Any] | None:
    return await requests.find_one({"idempotency_key": key}, WITHOUT_PRODUCTS)


async def find_summary(requests: AsyncCollection, request_id: str) -> dict[str, Any] | None:
    return await requests.find_one({"_id": request_id}, WITHOUT_PRODUCTS)


async def find_page(requests: AsyncCollection, request_id: str, offset: int, limit: int) -> dict[str, Any] | None:
    return await requests.find_one({"_id": request_id}, {"products": {"$slice": [offset, limit]}})


async def iterate_products(requests: AsyncCollection, request_id: str) -> AsyncIterator[dict[str, Any]]:
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


async def replace_webhook(requests: AsyncCollection, request_id: str, webhook: dict[str, Any]) -> dict[str, Any] | None:
    """Set the request's webhook; returns the request (without products) after the change."""
    return await requests.find_one_and_update(
        {"_id": request_id},
        {"$set": {"webhook": webhook, "updated_at": utcnow()}},
        projection=WITHOUT_PRODUCTS,
        return_document=ReturnDocument.AFTER,
    )
