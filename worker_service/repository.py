"""The worker's reads and writes of request documents: every state change is one atomic update.

MongoDB is the source of truth. A product is claimed with a lease and an attempt
count before it is worked on; its results are written in one update guarded by that
claim, so running a product twice changes nothing; a request is finalised by the one
update that moves it out of `processing`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection

from shared.documents import utcnow
from shared.models import FINAL_STATUSES, ProductStatus, RequestStatus, WebhookState, final_status

# Bounds what a failure adds to the request document (see the README's document-size figures).
MAX_ERROR_MESSAGE = 120
UNFINISHED_PRODUCT = [ProductStatus.PENDING.value, ProductStatus.PROCESSING.value]
FINAL_VALUES = [status.value for status in FINAL_STATUSES]


@dataclass(frozen=True)
class ClaimedProduct:
    index: int
    serial_number: int
    input_image_urls: list[str]
    attempt: int


@dataclass(frozen=True)
class ImageOutcome:
    key: str | None = None
    error: str | None = None


def short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 1] + "…"


def product_path(index: int, field: str) -> str:
    return f"products.{index}.{field}"


def lease_free(index: int, now: datetime) -> dict[str, Any]:
    lease = product_path(index, "lease_expires_at")
    return {"$or": [{product_path(index, "status"): ProductStatus.PENDING.value},
                    {lease: None}, {lease: {"$lt": now}}]}


# -- requests ---------------------------------------------------------------------------

def start_request(requests: Collection, request_id: str) -> int | None:
    """Move a pending request to processing; its product count, or None if it was not pending."""
    now = utcnow()
    document = requests.find_one_and_update(
        {"_id": request_id, "status": RequestStatus.PENDING.value},
        {"$set": {"status": RequestStatus.PROCESSING.value, "started_at": now, "updated_at": now}},
        projection={"products_total": 1},
    )
    return document["products_total"] if document else None


def finalize_request(requests: Collection, request_id: str) -> dict[str, Any] | None:
    """Finish a request whose products are all done; the document if this call finished it.

    Only one caller can move it out of `processing`, so the webhook is started once.
    """
    counts = requests.find_one(
        {"_id": request_id, "status": RequestStatus.PROCESSING.value},
        {"products_total": 1, "products_done": 1, "images_total": 1, "images_failed": 1, "webhook.state": 1},
    )
    if counts is None or counts["products_done"] < counts["products_total"]:
        return None
    now = utcnow()
    update: dict[str, Any] = {
        "status": final_status(counts["images_total"], counts["images_failed"]).value,
        "completed_at": now,
        "updated_at": now,
    }
    if counts.get("webhook"):
        # The sweeper's grace for a lost delivery counts from here.
        update["webhook.next_attempt_at"] = now
    return requests.find_one_and_update(
        {"_id": request_id, "status": RequestStatus.PROCESSING.value,
         "products_done": counts["products_total"]},
        {"$set": update},
        projection={"products": 0},
        return_document=ReturnDocument.AFTER,
    )


# -- products ---------------------------------------------------------------------------

def claim_product(requests: Collection, request_id: str, index: int, lease_seconds: float) -> ClaimedProduct | None:
    """Take a product that is pending or whose lease expired; None if done or held by another."""
    now = utcnow()
    document = requests.find_one_and_update(
        {"_id": request_id, product_path(index, "status"): {"$in": UNFINISHED_PRODUCT}, **lease_free(index, now)},
        {"$set": {product_path(index, "status"): ProductStatus.PROCESSING.value,
                  product_path(index, "lease_expires_at"): now + timedelta(seconds=lease_seconds)},
         "$inc": {product_path(index, "attempts"): 1}},
        projection={"_id": 1, "products": {"$slice": [index, 1]}},
        return_document=ReturnDocument.AFTER,
    )
    if document is None:
        return None
    product = document["products"][0]
    return ClaimedProduct(index=index, serial_number=product["serial_number"],
                          input_image_urls=product["input_image_urls"], attempt=product["attempts"])


def renew_lease(requests: Collection, request_id: str, claim: ClaimedProduct, lease_seconds: float) -> bool:
    result = requests.update_one(
        {"_id": request_id, product_path(claim.index, "status"): ProductStatus.PROCESSING.value,
         product_path(claim.index, "attempts"): claim.attempt},
        {"$set": {product_path(claim.index, "lease_expires_at"): utcnow() + timedelta(seconds=lease_seconds)}},
    )
    return result.matched_count == 1


def record_product(requests: Collection, request_id: str, claim: ClaimedProduct,
                   outcomes: list[ImageOutcome]) -> bool:
    """Write a product's results and the request's counters in one update, if the claim still holds."""
    failed = sum(1 for outcome in outcomes if outcome.key is None)
    status = ProductStatus.FAILED if failed == len(outcomes) else ProductStatus.COMPLETED
    errors = [{"index": i, "message": short(o.error or "failed")} for i, o in enumerate(outcomes) if o.key is None]
    result = requests.update_one(
        {"_id": request_id, product_path(claim.index, "status"): ProductStatus.PROCESSING.value,
         product_path(claim.index, "attempts"): claim.attempt},
        {"$set": {product_path(claim.index, "status"): status.value,
                  product_path(claim.index, "output_keys"): [o.key for o in outcomes],
                  product_path(claim.index, "errors"): errors,
                  product_path(claim.index, "lease_expires_at"): None,
                  "updated_at": utcnow()},
         "$inc": {"products_done": 1, "images_done": len(outcomes), "images_failed": failed}},
    )
    return result.modified_count == 1


# -- what the sweeper looks for ---------------------------------------------------------

def stalled_pending_requests(requests: Collection, older_than: datetime) -> list[str]:
    return [d["_id"] for d in requests.find(
        {"status": RequestStatus.PENDING.value, "updated_at": {"$lt": older_than}}, {"_id": 1})]


def processing_requests(requests: Collection) -> list[dict[str, Any]]:
    """Unfinished requests with just what the sweeper needs of their products."""
    return list(requests.find(
        {"status": RequestStatus.PROCESSING.value},
        {"updated_at": 1, "products_total": 1, "products_done": 1,
         "products.status": 1, "products.lease_expires_at": 1},
    ))


def release_expired_lease(requests: Collection, request_id: str, index: int, now: datetime) -> bool:
    """Give a product whose worker was lost back to `pending`, keeping its attempt count."""
    result = requests.update_one(
        {"_id": request_id, product_path(index, "status"): ProductStatus.PROCESSING.value,
         product_path(index, "lease_expires_at"): {"$lt": now}},
        {"$set": {product_path(index, "status"): ProductStatus.PENDING.value,
                  product_path(index, "lease_expires_at"): None}},
    )
    return result.modified_count == 1


def touch(requests: Collection, request_id: str) -> None:
    requests.update_one({"_id": request_id}, {"$set": {"updated_at": utcnow()}})


def due_webhooks(requests: Collection, due_before: datetime) -> list[str]:
    now = utcnow()
    return [d["_id"] for d in requests.find(
        {"status": {"$in": FINAL_VALUES}, "webhook.state": WebhookState.PENDING.value,
         "webhook.next_attempt_at": {"$lt": due_before},
         "$or": [{"webhook.lease_expires_at": None}, {"webhook.lease_expires_at": {"$lt": now}}]},
        {"_id": 1})]


# -- webhooks ---------------------------------------------------------------------------

def claim_webhook(requests: Collection, request_id: str, hold_seconds: float) -> dict[str, Any] | None:
    """Take a due delivery of a finished request; the whole document, or None if not due."""
    now = utcnow()
    return requests.find_one_and_update(
        {"_id": request_id, "status": {"$in": FINAL_VALUES}, "webhook.state": WebhookState.PENDING.value,
         # A second of slack: a delivery scheduled with a countdown may run a hair early.
         "webhook.next_attempt_at": {"$lte": now + timedelta(seconds=1)},
         "$or": [{"webhook.lease_expires_at": None}, {"webhook.lease_expires_at": {"$lt": now}}]},
        {"$set": {"webhook.lease_expires_at": now + timedelta(seconds=hold_seconds)}},
        return_document=ReturnDocument.AFTER,
    )


def record_webhook_attempt(requests: Collection, request_id: str, message_id: str, *, attempts: int,
                           state: WebhookState, status_code: int | None, error: str | None,
                           next_attempt_at: datetime | None) -> bool:
    result = requests.update_one(
        {"_id": request_id, "webhook.message_id": message_id},
        {"$set": {"webhook.attempts": attempts, "webhook.state": state.value,
                  "webhook.last_status_code": status_code, "webhook.last_error": error,
                  "webhook.next_attempt_at": next_attempt_at, "webhook.lease_expires_at": None}},
    )
    return result.modified_count == 1
