"""The processing log: one entry per image, what became of it and what it cost.

The request document holds only what the status needs; each image's details (timings,
sizes, format) are kept in its product's claim document (worker_service/product_claims.py),
which also says whether a worker holds the product now. An entry is built from both.
"""

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from shared.db import IMAGE_LOG
from shared.documents import PublicUrls
from shared.models import ProductStatus
from shared.url_rules import redact_credentials


class ImageLogEntry(BaseModel):
    serial_number: int
    position: int = Field(description="the image's place among its product's input URLs, from 0")
    input_url: str
    # An image goes through the same states as its product.
    status: ProductStatus
    attempts: int | None = Field(description="download attempts, retries of transient errors included")
    output_url: str | None
    error: str | None
    format: str | None = Field(description="stored format: JPEG, PNG, WEBP, GIF")
    width: int | None
    height: int | None
    bytes_in: int | None = Field(description="size of the downloaded image")
    bytes_out: int | None = Field(description="size of the stored image")
    download_ms: float | None = Field(description="download time, retries and their waits included")
    compress_ms: float | None
    store_ms: float | None
    finished_at: datetime | None


class ImageLogPage(BaseModel):
    request_id: str
    images_total: int
    offset: int
    limit: int
    images: list[ImageLogEntry] = Field(description="in serial number and position order")


NOT_MEASURED = dict.fromkeys(
    ("attempts", "format", "width", "height", "bytes_in", "bytes_out", "download_ms", "compress_ms", "store_ms",
     "finished_at")
)  # fmt: skip


async def products_on_page(
    products: AsyncIterator[dict[str, Any]], offset: int, limit: int
) -> list[tuple[int, dict[str, Any], range]]:
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


def unfinished_status(claim: dict[str, Any] | None, now: datetime) -> ProductStatus:
    lease = claim.get("lease_expires_at") if claim else None
    return ProductStatus.PROCESSING if lease is not None and lease > now else ProductStatus.PENDING


def product_entries(
    product: dict[str, Any], positions: range, claim: dict[str, Any] | None, urls: PublicUrls, now: datetime
) -> list[ImageLogEntry]:
    """The entries of a product's images at `positions`, from its claim (None: never claimed)."""
    inputs = product["input_image_urls"]
    keys: list[str | None] = [None] * len(inputs)
    errors: dict[int, str] = {}
    details: list[dict[str, Any]] = [NOT_MEASURED] * len(inputs)
    statuses = [unfinished_status(claim, now)] * len(inputs)
    if claim is not None and claim.get("done"):
        keys = claim["result"]["output_keys"]
        errors = {error["index"]: error["message"] for error in claim["result"]["errors"]}
        # A claim recorded before the processing log was kept has no details.
        details = claim.get(IMAGE_LOG) or details
        statuses = [ProductStatus.COMPLETED if key else ProductStatus.FAILED for key in keys]
    return [
        ImageLogEntry(
            serial_number=product["serial_number"],
            position=position,
            input_url=redact_credentials(inputs[position]),
            status=statuses[position],
            output_url=urls.public_url(key) if (key := keys[position]) else None,
            error=errors.get(position),
            **details[position],
        )
        for position in positions
    ]
