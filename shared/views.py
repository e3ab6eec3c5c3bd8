"""How clients see a request: its stored documents (shared/store) turned into the API's views."""

from typing import Protocol

from shared.models import (
    ImageError,
    ProductStatus,
    ProductView,
    Progress,
    QueuePlace,
    RequestStatus,
    StatusView,
    WebhookState,
    WebhookView,
    percentage,
)
from shared.store.requests import ProductDocument, RequestDocument, RequestSummary, WebhookDocument
from shared.url_rules import redact_credentials


class PublicUrls(Protocol):
    def public_url(self, key: str) -> str: ...


def progress_of(document: RequestSummary) -> Progress:
    return Progress(
        percentage=percentage(document["images_done"], document["images_total"]),
        products_total=document["products_total"],
        products_done=document["products_done"],
        images_total=document["images_total"],
        images_done=document["images_done"],
        images_failed=document["images_failed"],
        bytes_in=document.get("bytes_in", 0),
        bytes_out=document.get("bytes_out", 0),
        images_reused=document.get("images_reused", 0),
    )


def output_urls_of(product: ProductDocument, urls: PublicUrls) -> list[str | None]:
    return [urls.public_url(key) if key else None for key in product["output_keys"]]


def product_view(product: ProductDocument, urls: PublicUrls) -> ProductView:
    # Answers never show a password a client put in a URL; the output CSV, the client's
    # own spreadsheet given back, keeps the URLs exactly as uploaded.
    inputs = [redact_credentials(url) for url in product["input_image_urls"]]
    return ProductView(
        serial_number=product["serial_number"],
        product_name=product["product_name"],
        status=ProductStatus(product["status"]),
        input_image_urls=inputs,
        output_image_urls=output_urls_of(product, urls),
        errors=[ImageError(url=inputs[e["index"]], message=e["message"]) for e in product["errors"]],
    )


def webhook_view(webhook: WebhookDocument | None) -> WebhookView | None:
    if webhook is None:
        return None
    return WebhookView(
        url=redact_credentials(webhook["url"]),
        state=WebhookState(webhook["state"]),
        attempts=webhook["attempts"],
        last_status_code=webhook["last_status_code"],
    )


def status_view(
    document: RequestDocument, urls: PublicUrls, download_url: str, place: QueuePlace | None = None
) -> StatusView:
    return StatusView(
        request_id=document["_id"],
        status=RequestStatus(document["status"]),
        progress=progress_of(document),
        created_at=document["created_at"],
        updated_at=document["updated_at"],
        completed_at=document["completed_at"],
        download_url=download_url,
        webhook=webhook_view(document["webhook"]),
        queue=place,
        products=[product_view(p, urls) for p in document["products"]],
    )
