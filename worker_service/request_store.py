"""The worker's reads and writes of request documents, each state change one atomic update.

MongoDB is the source of truth. The request document changes when a request starts,
when a batch of product results is merged into it (at most about once a second per
request, however many products finish), when it is finalised, and as its webhook is
delivered. Finalisation is the one update that moves the request out of `processing`,
so it happens once.
"""

from datetime import datetime
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection

from shared.models import ProductStatus, RequestStatus, final_status, utcnow
from worker_service.product_claims import ProductWork

PRODUCT_WORK = {"products.serial_number": 1, "products.input_image_urls": 1, "products.status": 1}
MERGE_RETRIES = 5


def product_path(index: int, field: str) -> str:
    return f"products.{index}.{field}"


def work_of(request_id: str, products: list[dict[str, Any]], indexes: list[int] | None = None) -> list[ProductWork]:
    chosen = range(len(products)) if indexes is None else indexes
    return [ProductWork(request_id, i, products[i]["serial_number"], products[i]["input_image_urls"]) for i in chosen]


# -- requests ---------------------------------------------------------------------------


def start_request(requests: Collection[dict[str, Any]], request_id: str) -> list[ProductWork] | None:
    """Move a pending request to processing; its products, or None if it was not pending."""
    now = utcnow()
    document = requests.find_one_and_update(
        {"_id": request_id, "status": RequestStatus.PENDING.value},
        {"$set": {"status": RequestStatus.PROCESSING.value, "started_at": now, "updated_at": now}},
        projection=PRODUCT_WORK,
        return_document=ReturnDocument.AFTER,
    )
    return work_of(request_id, document["products"]) if document else None


def pending_work(
    requests: Collection[dict[str, Any]], request_id: str, indexes: list[int] | None = None
) -> list[ProductWork]:
    """Products still pending in the request document (all of them, or those of `indexes`)."""
    document = requests.find_one({"_id": request_id}, PRODUCT_WORK)
    if document is None:
        return []
    products = document["products"]
    candidates = range(len(products)) if indexes is None else indexes
    pending = [i for i in candidates if products[i]["status"] == ProductStatus.PENDING.value]
    return work_of(request_id, products, pending)


def merge_update(claims: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The filter and update that fold these results in, only if none of them is folded in yet."""
    condition: dict[str, Any] = {}
    fields: dict[str, Any] = {"updated_at": utcnow()}
    counters = {"products_done": 0, "images_done": 0, "images_failed": 0, "bytes_in": 0, "bytes_out": 0}
    for claim in claims:
        index, result = claim["index"], claim["result"]
        condition[product_path(index, "status")] = ProductStatus.PENDING.value
        fields[product_path(index, "status")] = result["status"]
        fields[product_path(index, "output_keys")] = result["output_keys"]
        fields[product_path(index, "errors")] = result["errors"]
        fields[product_path(index, "attempts")] = claim["attempts"]
        counters["products_done"] += 1
        counters["images_done"] += result["images"]
        counters["images_failed"] += result["images_failed"]
        # A result recorded before byte counts were kept has none.
        counters["bytes_in"] += result.get("bytes_in", 0)
        counters["bytes_out"] += result.get("bytes_out", 0)
    return condition, {"$set": fields, "$inc": counters}


def still_pending(
    requests: Collection[dict[str, Any]], request_id: str, claims: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    document = requests.find_one({"_id": request_id}, {"products.status": 1})
    statuses = [p["status"] for p in document["products"]] if document else []
    return [c for c in claims if c["index"] < len(statuses) and statuses[c["index"]] == ProductStatus.PENDING.value]


def merge_results(
    requests: Collection[dict[str, Any]], request_id: str, claims: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Fold product results into the request document in one update; the claims now merged.

    Safe to run twice or concurrently: the update only applies while every product in it
    is still pending, and when it does not, those already folded in are left out.
    """
    for _ in range(MERGE_RETRIES):
        if not claims:
            return []
        condition, update = merge_update(claims)
        if requests.update_one({"_id": request_id, **condition}, update).modified_count:
            return claims
        claims = still_pending(requests, request_id, claims)
    return []


def finalize_request(requests: Collection[dict[str, Any]], request_id: str) -> dict[str, Any] | None:
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
        {"_id": request_id, "status": RequestStatus.PROCESSING.value, "products_done": counts["products_total"]},
        {"$set": update},
        projection={"products": 0},
        return_document=ReturnDocument.AFTER,
    )


# -- what the sweeper looks for ---------------------------------------------------------


def stalled_pending_requests(requests: Collection[dict[str, Any]], older_than: datetime) -> list[str]:
    return [
        d["_id"]
        for d in requests.find({"status": RequestStatus.PENDING.value, "updated_at": {"$lt": older_than}}, {"_id": 1})
    ]


def processing_requests(requests: Collection[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unfinished requests with their counters (not their products)."""
    return list(
        requests.find(
            {"status": RequestStatus.PROCESSING.value}, {"updated_at": 1, "products_total": 1, "products_done": 1}
        )
    )


def touch(requests: Collection[dict[str, Any]], request_id: str) -> None:
    requests.update_one({"_id": request_id}, {"$set": {"updated_at": utcnow()}})
