"""The `product_claims` collection: who works on a product, since when, how often, and what came of it.

One small document per product, so that claiming a product, renewing its lease and recording its
result cost the same whatever the size of the request. A claim is taken only while no live lease
holds it and no result is recorded; the result is written under the same attempt number, so a
product run twice is recorded once. Results are later merged into the request document in batches
(`requests.merge`), and the claim keeps each image's details: the processing log.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NotRequired, TypedDict

from pydantic import BaseModel, Field
from pymongo import ASCENDING, IndexModel
from pymongo.errors import DuplicateKeyError

from shared.models import ProductStatus, ReuseKind
from shared.store.leases import is_live, lease_until, no_live_lease
from shared.store.operations import (
    CreateIndexes,
    DeleteMany,
    Find,
    FindOneAndUpdate,
    InsertAbsent,
    Program,
    Query,
    UpdateMany,
    UpdateOne,
)
from shared.store.sources import SourceDocument

COLLECTION = "product_claims"

INDEXES = [
    IndexModel([("request_id", ASCENDING), ("merged", ASCENDING)], name="unmerged_by_request"),
    IndexModel([("done", ASCENDING), ("lease_expires_at", ASCENDING)], name="expired_leases"),
    # The sweeper's results not merged in time.
    IndexModel([("merged", ASCENDING), ("done_at", ASCENDING)], name="unmerged_by_age"),
]


@dataclass(frozen=True)
class ProductWork:
    """A product as its task sees it, carried in the task's message."""

    request_id: str
    index: int
    serial_number: int
    input_image_urls: list[str]
    # Whose request it is (the API key's digest), for what the service remembers of its sources.
    owner: str | None = None
    # The upload asked for every image to be processed from scratch.
    refresh: bool = False
    # The positions to process; None: every image. A retry processes only those that failed.
    positions: list[int] | None = None
    # Its request was found a new catalogue (worker_service/revalidation.py): it looks up nothing of
    # what the owner's earlier requests left, though it still leaves what it learns for later ones.
    new_catalogue: bool = False

    def to_process(self) -> list[int]:
        return list(range(len(self.input_image_urls))) if self.positions is None else self.positions


class ImageDetails(BaseModel):
    """What the processing log shows of one image, filled in step by step; None where it did not get to."""

    attempts: int | None = Field(default=None, description="download attempts, retries of transient errors included")
    format: str | None = Field(default=None, description="stored format: JPEG, PNG, WEBP, GIF")
    width: int | None = None
    height: int | None = None
    bytes_in: int | None = Field(default=None, description="size of the downloaded image")
    bytes_out: int | None = Field(default=None, description="size of the stored image")
    download_ms: float | None = Field(default=None, description="download time, retries and their waits included")
    compress_ms: float | None = Field(default=None, description="decoding and encoding, without the wait for a codec")
    store_ms: float | None = None
    finished_at: datetime | None = None
    reuse: ReuseKind | None = Field(
        default=None, description="not_modified or unchanged when an earlier request's output was reused"
    )


class ImageFailure(TypedDict):
    """A failed image of a product, by its position among the product's input URLs."""

    index: int
    message: str


class ProductResult(TypedDict):
    """What came of a product, as it is merged into the request document."""

    status: str  # a ProductStatus: completed, or failed when no image succeeded
    output_keys: list[str | None]  # by position; None where the image failed
    errors: list[ImageFailure]
    images: int
    images_failed: int
    images_reused: NotRequired[int]  # absent from results recorded before re-imports
    # Absent from results recorded before bytes were counted.
    bytes_in: NotRequired[int]
    bytes_out: NotRequired[int]


class ClaimDocument(TypedDict):
    _id: str  # claim_id(request_id, index)
    request_id: str
    index: int
    attempts: int
    lease_expires_at: datetime | None
    done: bool
    merged: bool


class FinishedClaim(ClaimDocument):
    """A claim whose result is recorded (`done`), as the merge reads it: without the image log."""

    result: ProductResult
    done_at: datetime
    # What to remember of the product's sources, once merged (absent with REUSE_OUTPUTS off).
    sources: NotRequired[list[SourceDocument]]


class LoggedClaim(FinishedClaim):
    """A finished claim with each image's details, by position (a dump of `ImageDetails`)."""

    # Absent from claims recorded before the processing log was kept.
    image_log: NotRequired[list[dict[str, object]]]


def claim_id(request_id: str, index: int) -> str:
    """The id of a product's claim document: the request and the product's index in it."""
    return f"{request_id}:{index}"


def ensure_indexes() -> CreateIndexes:
    return CreateIndexes(COLLECTION, INDEXES)


# -- the worker's ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A product taken by this attempt, with what an earlier run of it left (a retry keeps the
    outcome of the images it does not process again)."""

    attempt: int
    earlier: LoggedClaim | None = None

    def earlier_outcome(self, position: int) -> tuple[str | None, str | None, dict[str, object]]:
        """(key, error, details) of an image as the earlier run left it."""
        if self.earlier is None:
            return None, None, {}
        result = self.earlier["result"]
        errors = {error["index"]: error["message"] for error in result["errors"]}
        log = self.earlier.get("image_log") or []
        return result["output_keys"][position], errors.get(position), log[position] if position < len(log) else {}


def claim(work: ProductWork, now: datetime, lease_seconds: float) -> Program[Claimed | None]:
    """Take the product; this attempt, or None if it is done or another worker holds it."""
    try:
        document = yield from FindOneAndUpdate[LoggedClaim](
            COLLECTION,
            {"_id": claim_id(work.request_id, work.index), "done": False, "lease_expires_at": no_live_lease(now)},
            {
                "$set": {"lease_expires_at": lease_until(now, lease_seconds)},
                "$inc": {"attempts": 1},
                "$setOnInsert": {"request_id": work.request_id, "index": work.index, "merged": False},
            },
            upsert=True,
        )
    except DuplicateKeyError:
        return None  # the claim exists and is done or leased: the filter did not match it
    assert document is not None  # an upsert asked for the document after it always finds one
    return Claimed(document["attempts"], document if "result" in document else None)


def renew_lease(work: ProductWork, attempt: int, now: datetime, lease_seconds: float) -> Program[bool]:
    """Keep holding the product; False once this attempt no longer holds it."""
    renewed = yield from UpdateOne(
        COLLECTION,
        {"_id": claim_id(work.request_id, work.index), "attempts": attempt, "done": False},
        {"$set": {"lease_expires_at": lease_until(now, lease_seconds)}},
    )
    return renewed.matched == 1


def record(
    work: ProductWork,
    attempt: int,
    result: ProductResult,
    image_log: list[ImageDetails],
    sources: list[SourceDocument],
    now: datetime,
) -> Program[bool]:
    """Keep the product's result, its images' details and what to remember of its sources, if this
    attempt still holds the claim."""
    recorded = yield from UpdateOne(
        COLLECTION,
        {"_id": claim_id(work.request_id, work.index), "attempts": attempt, "done": False},
        {"$set": recorded_fields(result, image_log, sources, now)},
    )
    return recorded.modified == 1


def recorded_at_once(
    work: ProductWork,
    result: ProductResult,
    image_log: list[ImageDetails],
    sources: list[SourceDocument],
    now: datetime,
) -> LoggedClaim:
    """The claim of a product done in one go, never leased (a batch of re-imported products): as a
    first attempt's recorded result would leave it."""
    return {
        "_id": claim_id(work.request_id, work.index),
        "request_id": work.request_id,
        "index": work.index,
        "attempts": 1,
        "merged": False,
        **recorded_fields(result, image_log, sources, now),
    }


def record_unclaimed(claims: list[LoggedClaim]) -> Program[set[int]]:
    """Keep these results of products nobody has claimed; the indexes kept (one claimed meanwhile,
    by a copy of its task, is that task's to record)."""
    inserted = yield from InsertAbsent(COLLECTION, claims)
    return {claim["index"] for claim in claims if claim["_id"] in inserted}


class RecordedFields(TypedDict):
    done: bool
    lease_expires_at: None
    result: ProductResult
    image_log: list[dict[str, object]]
    sources: list[SourceDocument]
    done_at: datetime


def recorded_fields(
    result: ProductResult, image_log: list[ImageDetails], sources: list[SourceDocument], now: datetime
) -> RecordedFields:
    """What a recorded result sets in its claim, by a task's attempt or a batch alike."""
    return {
        "done": True,
        "lease_expires_at": None,
        "result": result,
        "image_log": image_log_of(image_log),
        "sources": sources,
        "done_at": now,
    }


def image_log_of(details: list[ImageDetails]) -> list[dict[str, object]]:
    """Each image's details, by position: kept in the claim, never merged into the request document."""
    return [image.model_dump() for image in details]


def unmerged_results(request_id: str) -> Query:
    """The request's claims with a result not yet in its document."""
    return {"request_id": request_id, "merged": False, "done": True}


def unmerged(request_id: str) -> Find[FinishedClaim]:
    # The merge needs results, not the per-image details of the processing log.
    return Find[FinishedClaim](COLLECTION, unmerged_results(request_id), {"image_log": 0})


class ClaimRef(TypedDict):
    _id: str


def count_unmerged(request_id: str) -> Program[int]:
    """How many of the request's products have a result not yet in its document."""
    found = yield from Find[ClaimRef](COLLECTION, unmerged_results(request_id), {"_id": 1})
    return len(found)


def sources_of(claims: list[FinishedClaim]) -> list[SourceDocument]:
    """What the merged products teach of their sources, for the next re-import."""
    return [source for claim in claims for source in claim.get("sources", [])]


def mark_merged(claims: list[FinishedClaim]) -> Program[None]:
    if claims:
        ids = [claim["_id"] for claim in claims]
        yield from UpdateMany(COLLECTION, {"_id": {"$in": ids}}, {"$set": {"merged": True}})


def recorded_results(request_id: str, indexes: list[int]) -> Program[dict[int, ProductResult]]:
    """The recorded results of these products, by index (a product never claimed has none)."""
    ids = [claim_id(request_id, index) for index in indexes]
    claims = yield from Find[FinishedClaim](COLLECTION, {"_id": {"$in": ids}, "done": True}, {"index": 1, "result": 1})
    return {claim["index"]: claim["result"] for claim in claims}


def reopen_claims(request_id: str, indexes: list[int]) -> UpdateMany:
    """These products are to be processed again (a retry): free to claim, their attempts counted
    afresh; their last result and image log stay, for the images not processed again. Only a
    merged claim is reopened, so that the sweeper may ask again for any pending products."""
    ids = [claim_id(request_id, index) for index in indexes]
    return UpdateMany(
        COLLECTION,
        {"_id": {"$in": ids}, "merged": True},
        {"$set": {"done": False, "merged": False, "attempts": 0, "lease_expires_at": None}},
    )


def held(request_id: str, now: datetime) -> Program[bool]:
    """Whether a worker holds a product of the request now (its images under way)."""
    open_claims = yield from Find[ClaimDocument](
        COLLECTION, {"request_id": request_id, "done": False}, {"lease_expires_at": 1}
    )
    return any(is_live(claim["lease_expires_at"], now) for claim in open_claims)


def close_unfinished(request_id: str) -> DeleteMany:
    """A cancelled request's claims that have no result: a worker still at one then records nothing."""
    return DeleteMany(COLLECTION, {"request_id": request_id, "done": False})


def delete_of(request_id: str) -> DeleteMany:
    """Every claim of a deleted request, and so its processing log."""
    return DeleteMany(COLLECTION, {"request_id": request_id})


# -- the sweeper's --------------------------------------------------------------------------------


def release_expired(now: datetime) -> Program[list[tuple[str, int]]]:
    """Products whose worker was lost: their lease is cleared so the next claim wins; (request, index) of each."""
    expired = yield from Find[ClaimDocument](
        COLLECTION, {"done": False, "lease_expires_at": {"$lt": now}}, {"request_id": 1, "index": 1}
    )
    released = []
    for document in expired:
        cleared = yield from UpdateOne(
            COLLECTION,
            {"_id": document["_id"], "done": False, "lease_expires_at": {"$lt": now}},
            {"$set": {"lease_expires_at": None}},
        )
        if cleared.modified:
            released.append((document["request_id"], document["index"]))
    return released


class StaleClaim(TypedDict):
    _id: str
    request_id: str
    done: bool


def requests_with_stale_results(older_than: datetime) -> Program[set[str]]:
    """Requests with a result recorded before `older_than` and not merged since. Found by the
    `unmerged_by_age` index, and `done` decided here (a claim reopened by a retry keeps its last
    `done_at`): with it in the query, the embedded server read every claim each sweep (5,000
    claims: 140 ms; 1 ms this way)."""
    claims = yield from Find[StaleClaim](
        COLLECTION, {"merged": False, "done_at": {"$lt": older_than}}, {"request_id": 1, "done": 1}
    )
    return {claim["request_id"] for claim in claims if claim["done"]}


def settled(request_id: str, now: datetime) -> Program[set[int]]:
    """Products of the request that are done or held by a live lease: not to be enqueued again."""
    # Decided here rather than with an $or in the query (operations.checked).
    claims = yield from Find[ClaimDocument](
        COLLECTION, {"request_id": request_id}, {"index": 1, "done": 1, "lease_expires_at": 1}
    )
    return {claim["index"] for claim in claims if claim["done"] or is_live(claim["lease_expires_at"], now)}


# -- the API's ------------------------------------------------------------------------------------


def of_products(request_id: str, indexes: list[int]) -> Program[dict[int, LoggedClaim]]:
    """The claims of these products of the request, by product index (unclaimed ones absent)."""
    ids = [claim_id(request_id, index) for index in indexes]
    claims = yield from Find[LoggedClaim](COLLECTION, {"_id": {"$in": ids}})
    return {claim["index"]: claim for claim in claims}


def busy_products(request_id: str, indexes: list[int], now: datetime) -> Program[set[int]]:
    """Which of these products a worker holds now, or has finished without their result merged yet:
    the request document alone would show them as pending."""
    ids = [claim_id(request_id, index) for index in indexes]
    claims = yield from Find[ClaimDocument](
        COLLECTION, {"_id": {"$in": ids}}, {"index": 1, "done": 1, "merged": 1, "lease_expires_at": 1}
    )
    return {claim["index"] for claim in claims if is_busy(claim, now)}


def is_busy(claim: ClaimDocument, now: datetime) -> bool:
    """Held by a live lease, or done with its result not yet merged into the request document."""
    return not claim["merged"] if claim["done"] else is_live(claim["lease_expires_at"], now)


def unfinished_status(claim: ClaimDocument | None, now: datetime) -> ProductStatus:
    """The state of a product without a recorded result: processing while a live lease holds it."""
    held = claim is not None and is_live(claim["lease_expires_at"], now)
    return ProductStatus.PROCESSING if held else ProductStatus.PENDING
