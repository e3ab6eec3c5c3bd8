"""Product claims: who works on a product, since when, how often, and what came of it.

One small document per product (`product_claims`), so claiming a product, renewing its
lease and recording its result cost the same whatever the size of the request. A claim
is taken only while no live lease holds it and no result is recorded; the result is
written under the same attempt number, so a product run twice is recorded once. Results
are later merged into the request document in batches (`request_store.merge_results`).
"""

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

from shared.db import IMAGE_LOG, claim_id, has_live_lease, no_live_lease
from shared.models import ProductStatus, utcnow

# Bounds what a failure adds to the request document (see the README's document-size figures).
MAX_ERROR_MESSAGE = 120


@dataclass(frozen=True)
class ProductWork:
    """What a product task needs to know, carried in its message."""

    request_id: str
    index: int
    serial_number: int
    input_image_urls: list[str]


@dataclass
class ImageDetails:
    """What the processing log shows of one image, filled in step by step; None where it did not get to."""

    attempts: int | None = None  # download attempts, retries of transient errors included
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes_in: int | None = None
    bytes_out: int | None = None
    download_ms: float | None = None
    compress_ms: float | None = None
    store_ms: float | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class ImageOutcome:
    key: str | None = None
    error: str | None = None
    details: ImageDetails = field(default_factory=ImageDetails)


def short(message: str) -> str:
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 1] + "…"


def claim(claims: Collection[dict[str, Any]], work: ProductWork, lease_seconds: float) -> int | None:
    """Take the product; its attempt number, or None if it is done or another worker holds it."""
    now = utcnow()
    try:
        document = claims.find_one_and_update(
            {"_id": claim_id(work.request_id, work.index), "done": False, "lease_expires_at": no_live_lease(now)},
            {
                "$set": {"lease_expires_at": now + timedelta(seconds=lease_seconds)},
                "$inc": {"attempts": 1},
                "$setOnInsert": {"request_id": work.request_id, "index": work.index, "merged": False},
            },
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        return None  # the claim exists and is done or leased: the filter did not match it
    assert document is not None  # an upsert asked for the document AFTER always finds one
    attempts: int = document["attempts"]
    return attempts


def renew_lease(claims: Collection[dict[str, Any]], work: ProductWork, attempt: int, lease_seconds: float) -> bool:
    result = claims.update_one(
        {"_id": claim_id(work.request_id, work.index), "attempts": attempt, "done": False},
        {"$set": {"lease_expires_at": utcnow() + timedelta(seconds=lease_seconds)}},
    )
    return result.matched_count == 1


def result_of(outcomes: list[ImageOutcome]) -> dict[str, Any]:
    failed = sum(1 for outcome in outcomes if outcome.key is None)
    return {
        "status": (ProductStatus.FAILED if failed == len(outcomes) else ProductStatus.COMPLETED).value,
        "output_keys": [outcome.key for outcome in outcomes],
        "errors": [
            {"index": i, "message": short(o.error or "failed")} for i, o in enumerate(outcomes) if o.key is None
        ],
        "images": len(outcomes),
        "images_failed": failed,
        "bytes_in": sum(outcome.details.bytes_in or 0 for outcome in outcomes),
        "bytes_out": sum(outcome.details.bytes_out or 0 for outcome in outcomes),
    }


def image_log_of(outcomes: list[ImageOutcome]) -> list[dict[str, Any]]:
    """Each image's details, by position: kept in the claim, never merged into the request document."""
    return [asdict(outcome.details) for outcome in outcomes]


def record(claims: Collection[dict[str, Any]], work: ProductWork, attempt: int, outcomes: list[ImageOutcome]) -> bool:
    """Keep the product's result, if this attempt still holds the claim."""
    result = claims.update_one(
        {"_id": claim_id(work.request_id, work.index), "attempts": attempt, "done": False},
        {
            "$set": {
                "done": True,
                "result": result_of(outcomes),
                IMAGE_LOG: image_log_of(outcomes),
                "lease_expires_at": None,
                "done_at": utcnow(),
            }
        },
    )
    return result.modified_count == 1


def unmerged(claims: Collection[dict[str, Any]], request_id: str) -> list[dict[str, Any]]:
    # The merge needs results, not the per-image details of the processing log.
    return list(claims.find({"request_id": request_id, "merged": False, "done": True}, {IMAGE_LOG: 0}))


def mark_merged(claims: Collection[dict[str, Any]], ids: list[str]) -> None:
    if ids:
        claims.update_many({"_id": {"$in": ids}}, {"$set": {"merged": True}})


def release_expired(claims: Collection[dict[str, Any]], now: datetime) -> list[tuple[str, int]]:
    """Products whose worker was lost: their lease is cleared so the next claim wins; (request, index) of each."""
    released = []
    for document in claims.find({"done": False, "lease_expires_at": {"$lt": now}}, {"request_id": 1, "index": 1}):
        result = claims.update_one(
            {"_id": document["_id"], "done": False, "lease_expires_at": {"$lt": now}},
            {"$set": {"lease_expires_at": None}},
        )
        if result.modified_count:
            released.append((document["request_id"], document["index"]))
    return released


def requests_with_stale_results(claims: Collection[dict[str, Any]], older_than: datetime) -> list[str]:
    return claims.distinct("request_id", {"done": True, "merged": False, "done_at": {"$lt": older_than}})


def settled(claims: Collection[dict[str, Any]], request_id: str) -> set[int]:
    """Products of the request that are done or held by a live lease: not to be enqueued again."""
    now = utcnow()
    # Filtered here rather than with an $or, which would make the embedded server scan every claim.
    fields = {"index": 1, "done": 1, "lease_expires_at": 1}
    return {d["index"] for d in claims.find({"request_id": request_id}, fields) if d["done"] or has_live_lease(d, now)}
