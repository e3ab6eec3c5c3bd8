"""The processing log: one entry per image, what became of it and what it cost.

The request document holds only what the status needs; each image's details (timings, sizes,
format) are kept in its product's claim document (shared/store/product_claims.py), which also says
whether a worker holds the product now. An entry is built from both.
"""

from collections.abc import AsyncIterator
from datetime import datetime

from pydantic import BaseModel, Field

from shared.models import ProductStatus
from shared.store.product_claims import ImageDetails, LoggedClaim, unfinished_status
from shared.store.requests import ProductDocument
from shared.url_rules import redact_credentials
from shared.views import PublicUrls

NOT_MEASURED = ImageDetails().model_dump()


class ImageLogEntry(ImageDetails):
    serial_number: int
    position: int = Field(description="the image's place among its product's input URLs, from 0")
    input_url: str
    # An image goes through the same states as its product.
    status: ProductStatus
    output_url: str | None
    error: str | None


class ImageLogPage(BaseModel):
    request_id: str
    images_total: int
    offset: int
    limit: int
    images: list[ImageLogEntry] = Field(description="in serial number and position order")


async def products_on_page(
    products: AsyncIterator[ProductDocument], offset: int, limit: int
) -> list[tuple[int, ProductDocument, range]]:
    """The products that hold images `offset` to `offset + limit` (counted over every image of
    the request in order), each with its index and its positions on the page."""
    page = []
    first_image = 0
    index = 0
    async for product in products:
        count = len(product["input_image_urls"])
        positions = range(max(offset - first_image, 0), min(offset + limit - first_image, count))
        if positions:
            page.append((index, product, positions))
        first_image += count
        index += 1
        if first_image >= offset + limit:
            break
    return page


def product_entries(
    product: ProductDocument, positions: range, claim: LoggedClaim | None, urls: PublicUrls, now: datetime
) -> list[ImageLogEntry]:
    """The entries of a product's images at `positions`, from its claim (None: never claimed)."""
    inputs = product["input_image_urls"]
    keys: list[str | None] = [None] * len(inputs)
    errors: dict[int, str] = {}
    details = [NOT_MEASURED] * len(inputs)
    statuses = [unfinished_status(claim, now)] * len(inputs)
    if claim is None and product["status"] == ProductStatus.FAILED:
        # Never claimed, and failed all the same: its request was cancelled before it started.
        errors = {error["index"]: error["message"] for error in product["errors"]}
        statuses = [ProductStatus.FAILED] * len(inputs)
    if claim is not None and claim["done"]:
        keys = claim["result"]["output_keys"]
        errors = {error["index"]: error["message"] for error in claim["result"]["errors"]}
        details = claim.get("image_log") or details
        statuses = [ProductStatus.COMPLETED if key else ProductStatus.FAILED for key in keys]
    return [
        ImageLogEntry.model_validate(
            {
                **details[position],
                "serial_number": product["serial_number"],
                "position": position,
                "input_url": redact_credentials(inputs[position]),
                "status": statuses[position],
                "output_url": urls.public_url(key) if (key := keys[position]) else None,
                "error": errors.get(position),
            }
        )
        for position in positions
    ]
