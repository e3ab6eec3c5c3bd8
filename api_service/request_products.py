"""A request's products in serial order, read a batch at a time so a large request is never held whole."""

from collections.abc import AsyncIterator

from shared.store import requests
from shared.store.operations import AsyncStore
from shared.store.requests import ProductDocument

PRODUCT_BATCH = 500


async def every_product(store: AsyncStore, request_id: str) -> AsyncIterator[ProductDocument]:
    offset = 0
    while True:
        products = await store.run(requests.products_from(request_id, offset, PRODUCT_BATCH))
        for product in products:
            yield product
        offset += len(products)
        if len(products) < PRODUCT_BATCH:
            return
