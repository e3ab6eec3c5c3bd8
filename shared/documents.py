"""The shape of a request document in MongoDB, and how clients see it.

One document per upload, with its products embedded in serial order. A product's
images are addressed by position: `input_image_urls[i]`, `output_keys[i]` (the storage
key once stored, else null) and at most one `errors` entry `{"index": i, "message"}`.
Keys rather than URLs are stored, and error entries name the position rather than
repeating the URL, so that the largest request the upload limits allow stays well
under MongoDB's 16 MB document limit (see the README).
"""

import uuid
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from shared.models import (
    ImageError,
    ProductStatus,
    ProductView,
    Progress,
    RequestStatus,
    StatusView,
    WebhookView,
    percentage,
    utcnow,
)
from shared.url_rules import redact_credentials
from shared.webhook_state import new_webhook


class ProductInput(Protocol):
    """Read-only, so frozen rows (csv_reader.ProductRow) match it too."""

    @property
    def serial_number(self) -> int: ...
    @property
    def product_name(self) -> str: ...
    @property
    def input_image_urls(self) -> Sequence[str]: ...


class PublicUrls(Protocol):
    def public_url(self, key: str) -> str: ...


def new_request_id() -> str:
    return str(uuid.uuid4())


def new_product(row: ProductInput) -> dict[str, Any]:
    urls = list(row.input_image_urls)
    return {
        "serial_number": row.serial_number,
        "product_name": row.product_name,
        "status": ProductStatus.PENDING.value,
        "input_image_urls": urls,
        "output_keys": [None] * len(urls),
        "errors": [],
        "attempts": 0,
    }


def new_request(
    request_id: str,
    rows: Iterable[ProductInput],
    *,
    webhook_url: str | None,
    idempotency_key: str | None,
    file_sha256: str,
    owner: str | None = None,
) -> dict[str, Any]:
    products = [new_product(row) for row in sorted(rows, key=lambda row: row.serial_number)]
    now = utcnow()
    document: dict[str, Any] = {
        "_id": request_id,
        "status": RequestStatus.PENDING.value,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "completed_at": None,
        "file_sha256": file_sha256,
        "products_total": len(products),
        "products_done": 0,
        "images_total": sum(len(p["input_image_urls"]) for p in products),
        "images_done": 0,
        "images_failed": 0,
        "bytes_in": 0,
        "bytes_out": 0,
        "webhook": new_webhook(webhook_url) if webhook_url else None,
        "products": products,
    }
    # Absent rather than null, so the unique index on it ignores requests without a key.
    if idempotency_key is not None:
        document["idempotency_key"] = idempotency_key
    # The SHA-256 of the API key that created it (api_service.auth), never the key itself.
    if owner is not None:
        document["owner"] = owner
    return document


def progress_of(document: dict[str, Any]) -> Progress:
    return Progress(
        percentage=percentage(document["images_done"], document["images_total"]),
        products_total=document["products_total"],
        products_done=document["products_done"],
        images_total=document["images_total"],
        images_done=document["images_done"],
        images_failed=document["images_failed"],
        # Absent from a request stored before these counters were kept.
        bytes_in=document.get("bytes_in", 0),
        bytes_out=document.get("bytes_out", 0),
    )


def output_urls_of(product: dict[str, Any], urls: PublicUrls) -> list[str | None]:
    return [urls.public_url(key) if key else None for key in product["output_keys"]]


def product_view(product: dict[str, Any], urls: PublicUrls) -> ProductView:
    # Answers never show a password a client put in a URL; the output CSV, the client's
    # own spreadsheet given back, keeps the URLs exactly as uploaded.
    inputs = [redact_credentials(url) for url in product["input_image_urls"]]
    return ProductView(
        serial_number=product["serial_number"],
        product_name=product["product_name"],
        status=product["status"],
        input_image_urls=inputs,
        output_image_urls=output_urls_of(product, urls),
        errors=[ImageError(url=inputs[e["index"]], message=e["message"]) for e in product["errors"]],
    )


def webhook_view(webhook: dict[str, Any] | None) -> WebhookView | None:
    if webhook is None:
        return None
    return WebhookView(
        url=redact_credentials(webhook["url"]),
        state=webhook["state"],
        attempts=webhook["attempts"],
        last_status_code=webhook["last_status_code"],
    )


def status_view(document: dict[str, Any], urls: PublicUrls, download_url: str) -> StatusView:
    return StatusView(
        request_id=document["_id"],
        status=document["status"],
        progress=progress_of(document),
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        completed_at=document["completed_at"],
        download_url=download_url,
        webhook=webhook_view(document.get("webhook")),
        products=[product_view(p, urls) for p in document.get("products", [])],
    )
