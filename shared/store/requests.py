"""The `requests` collection: one document per upload, with its products embedded in serial order.

A product's images are addressed by position: `input_image_urls[i]`, `output_keys[i]` (the storage
key once stored, else null) and at most one `errors` entry `{"index": i, "message"}`. Keys rather
than URLs are stored, and error entries name the position rather than repeating the URL, so that
the largest request the upload limits allow stays well under MongoDB's 16 MB document limit
(docs/operations.md, document size).

The document changes when a request is stored, when it starts, when a batch of product results is
merged into it (at most about once a second, however many products finish), when it is finalised
(the one update that moves it out of `processing`, so it happens once), and as its webhook is
delivered. The delivery lives here too, so that the API that sets it, the worker that sends it and
the sweeper that finds a lost one agree on one record.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NotRequired, Protocol, TypedDict

from pymongo import ASCENDING, DESCENDING, IndexModel

from shared.models import (
    CANCELLED_IMAGE,
    FINAL_STATUS_VALUES,
    UNFINISHED_STATUS_VALUES,
    ProductStatus,
    RequestStatus,
    WebhookState,
    final_status,
)
from shared.store.leases import is_live, lease_until, no_live_lease
from shared.store.operations import (
    CreateIndexes,
    DeleteMany,
    Find,
    FindOne,
    FindOneAndUpdate,
    InsertOne,
    Program,
    Query,
    UpdateMany,
    UpdateOne,
)
from shared.store.product_claims import FinishedClaim, ImageFailure, ProductWork, recorded_results, reopen_claims

COLLECTION = "requests"
# Bounds what a failure adds to the request document (docs/operations.md, document size).
MAX_ERROR_MESSAGE = 120
# Races a merge retries before leaving the rest to the next merge.
MERGE_RETRIES = 5
# Counts the writes to a request's products: a merge writes them whole only if none came between.
REVISION = "revision"

# `_id` is the request id, unique by construction.
INDEXES = [
    IndexModel(
        [("idempotency_key", ASCENDING)],
        name="unique_idempotency_key",
        unique=True,
        partialFilterExpression={"idempotency_key": {"$type": "string"}},
    ),
    # Lets the sweeper find unfinished requests by age.
    IndexModel([("status", ASCENDING), ("updated_at", ASCENDING)], name="status_by_age"),
    # A caller's requests newest first (`_id` breaks ties), with API keys on and off.
    IndexModel([("owner", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)], name="owners_newest_first"),
    IndexModel([("created_at", DESCENDING), ("_id", DESCENDING)], name="newest_first"),
    # The retention: finished requests by age.
    IndexModel([("completed_at", ASCENDING)], name="by_completion"),
    # Cancels and deletions under way, for the sweeper: sparse, so only the requests being cancelled
    # or deleted are in them (and SecantusDB then answers from the index, not from every document).
    IndexModel([("cancel_requested_at", ASCENDING)], name="being_cancelled", sparse=True),
    IndexModel([("deleted_at", ASCENDING)], name="being_deleted", sparse=True),
    # Webhook deliveries due, for the sweeper.
    IndexModel([("webhook.state", ASCENDING), ("webhook.next_attempt_at", ASCENDING)], name="due_webhooks"),
]


class ProductDocument(TypedDict):
    serial_number: int
    product_name: str
    status: str  # a ProductStatus
    input_image_urls: list[str]
    output_keys: list[str | None]
    errors: list[ImageFailure]
    attempts: int


class WebhookDocument(TypedDict):
    """A request's webhook delivery: one attempt at a time, each under a lease."""

    url: str
    state: str  # a WebhookState
    message_id: str  # the same for every attempt of one delivery
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    lease_expires_at: datetime | None


class RequestSummary(TypedDict):
    """A request without its products: what most reads need."""

    _id: str
    status: str  # a RequestStatus
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    file_sha256: str
    products_total: int
    products_done: int
    images_total: int
    images_done: int
    images_failed: int
    # Absent from requests stored before these counters were kept.
    bytes_in: NotRequired[int]
    bytes_out: NotRequired[int]
    images_reused: NotRequired[int]  # absent from requests stored before re-imports
    # The upload asked for every image to be processed from scratch (CONTRACT §10).
    refresh: NotRequired[bool]
    # Its caller asked for it to stop: products not started never start (CONTRACT §4, cancel).
    cancel_requested_at: NotRequired[datetime]
    # Its caller (or the retention) deleted it: it answers 404 until its documents are gone.
    deleted_at: NotRequired[datetime]
    # How often its failed images were processed again.
    retries: NotRequired[int]
    webhook: WebhookDocument | None
    # Absent rather than null, so that the unique index on it ignores requests without a key.
    idempotency_key: NotRequired[str]
    # The SHA-256 of the API key that created it (api_service.auth), never the key itself.
    owner: NotRequired[str]


class RequestDocument(RequestSummary):
    products: list[ProductDocument]


class ProductInput(Protocol):
    """A product as read from the upload; read-only, so frozen rows (csv_reader.ProductRow) match it too."""

    @property
    def serial_number(self) -> int: ...
    @property
    def product_name(self) -> str: ...
    @property
    def input_image_urls(self) -> Sequence[str]: ...


WITHOUT_PRODUCTS = {"products": 0}
NOT_DELETED = {"deleted_at": {"$exists": False}}


def new_request_id() -> str:
    return str(uuid.uuid4())


def new_product(row: ProductInput) -> ProductDocument:
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


def new_webhook(url: str, now: datetime) -> WebhookDocument:
    """A webhook not yet delivered; its message id stays the same for every attempt."""
    return {
        "url": url,
        "state": WebhookState.PENDING.value,
        "message_id": f"msg_{uuid.uuid4().hex}",
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        # Due at once; the delivery only starts once the request is final.
        "next_attempt_at": now,
        "lease_expires_at": None,
    }


def new_request(
    request_id: str,
    rows: Iterable[ProductInput],
    *,
    now: datetime,
    webhook_url: str | None,
    idempotency_key: str | None,
    file_sha256: str,
    owner: str | None = None,
    refresh: bool = False,
) -> RequestDocument:
    products = [new_product(row) for row in sorted(rows, key=lambda row: row.serial_number)]
    document: RequestDocument = {
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
        "images_reused": 0,
        "refresh": refresh,
        "webhook": new_webhook(webhook_url, now) if webhook_url else None,
        "products": products,
    }
    if idempotency_key is not None:
        document["idempotency_key"] = idempotency_key
    if owner is not None:
        document["owner"] = owner
    return document


def status_of(document: RequestSummary) -> RequestStatus:
    return RequestStatus(document["status"])


def same_file(document: RequestSummary, sha256: str) -> bool:
    """Whether the request was made from the file with this SHA-256 (an Idempotency-Key's replay)."""
    return document["file_sha256"] == sha256


def short(message: str) -> str:
    """An image's error message as stored: cut to bound what failures add to the document."""
    return message if len(message) <= MAX_ERROR_MESSAGE else message[: MAX_ERROR_MESSAGE - 1] + "…"


def ensure_indexes() -> CreateIndexes:
    return CreateIndexes(COLLECTION, INDEXES)


# -- the API's ------------------------------------------------------------------------------------


def visible(request_id: str, owner: str | None) -> Query:
    """One request as its caller may see it: with API keys on (`owner`, the caller's digest from
    api_service.auth), only a request that caller created matches, so another key's request reads
    as not found. Every read or change of a request on a caller's behalf goes through it."""
    caller = {"_id": request_id} if owner is None else {"_id": request_id, "owner": owner}
    return {**caller, **NOT_DELETED}


def insert(document: RequestDocument) -> InsertOne:
    """Raises DuplicateKeyError when another upload stored the same Idempotency-Key first."""
    return InsertOne(COLLECTION, document)


def find_by_idempotency_key(key: str) -> FindOne[RequestSummary]:
    return FindOne[RequestSummary](COLLECTION, {"idempotency_key": key, **NOT_DELETED}, WITHOUT_PRODUCTS)


def find_summary(request_id: str, owner: str | None) -> FindOne[RequestSummary]:
    return FindOne[RequestSummary](COLLECTION, visible(request_id, owner), WITHOUT_PRODUCTS)


def find_page(request_id: str, owner: str | None, offset: int, limit: int) -> FindOne[RequestDocument]:
    """The request with the products from `offset`, at most `limit` of them."""
    return FindOne[RequestDocument](COLLECTION, visible(request_id, owner), {"products": {"$slice": [offset, limit]}})


def products_from(request_id: str, offset: int, limit: int) -> Program[list[ProductDocument]]:
    """At most `limit` products from `offset`, in serial order; none past the last."""
    page = yield from FindOne[RequestDocument](
        COLLECTION, {"_id": request_id}, {"products": {"$slice": [offset, limit]}, "products_total": 1}
    )
    return page["products"] if page else []


def replace_webhook(request_id: str, owner: str | None, url: str, now: datetime) -> FindOneAndUpdate[RequestSummary]:
    """Set the request's webhook, a new delivery; the request (without products) after the change."""
    return FindOneAndUpdate[RequestSummary](
        COLLECTION,
        visible(request_id, owner),
        {"$set": {"webhook": new_webhook(url, now), "updated_at": now}},
        projection=WITHOUT_PRODUCTS,
    )


# -- the worker's: a request's life ---------------------------------------------------------------

PRODUCT_WORK = {
    "products.serial_number": 1,
    "products.input_image_urls": 1,
    "products.status": 1,
    "products.errors": 1,
    "owner": 1,
    "refresh": 1,
}


class ProductsAtWork(TypedDict):
    """The request with only what its product tasks need of it and of each product."""

    _id: str
    products: list[ProductDocument]
    owner: NotRequired[str]
    refresh: NotRequired[bool]


def work_of(document: ProductsAtWork, indexes: Iterable[int]) -> list[ProductWork]:
    """The work of these products: each image, or, being retried, those that failed (its errors)."""
    products, owner, refresh = document["products"], document.get("owner"), document.get("refresh", False)
    return [
        ProductWork(
            document["_id"],
            i,
            products[i]["serial_number"],
            products[i]["input_image_urls"],
            owner,
            refresh,
            [error["index"] for error in products[i]["errors"]] or None,
        )
        for i in indexes
    ]


def start(request_id: str, now: datetime) -> Program[list[ProductWork] | None]:
    """Move a pending request to processing; its pending products, or None if it was not pending
    (or its caller cancelled it meanwhile)."""
    document = yield from FindOneAndUpdate[ProductsAtWork](
        COLLECTION,
        {"_id": request_id, "status": RequestStatus.PENDING.value, "cancel_requested_at": {"$exists": False}},
        {"$set": {"status": RequestStatus.PROCESSING.value, "started_at": now, "updated_at": now}},
        projection=PRODUCT_WORK,
    )
    if document is None:
        return None
    products = document["products"]
    return work_of(document, [i for i in range(len(products)) if products[i]["status"] == ProductStatus.PENDING])


def pending_work(request_id: str, indexes: list[int] | None = None) -> Program[list[ProductWork]]:
    """Products still pending in the request document (all of them, or those of `indexes`)."""
    document = yield from FindOne[ProductsAtWork](COLLECTION, {"_id": request_id}, PRODUCT_WORK)
    if document is None:
        return []
    products = document["products"]
    candidates = range(len(products)) if indexes is None else indexes
    return work_of(document, [i for i in candidates if products[i]["status"] == ProductStatus.PENDING])


def product_path(index: int, field: str) -> str:
    return f"products.{index}.{field}"


class MergeView(TypedDict):
    products: list[ProductDocument]
    # How often its products were written (merges, retries, cancels); absent before it was kept.
    revision: NotRequired[int]


def unchanged_since(document: MergeView) -> Query:
    """The filter of a write to the products that applies only if none was made since `document` was read."""
    return {REVISION: document["revision"]} if REVISION in document else {REVISION: {"$exists": False}}


def merge_update(document: MergeView, claims: list[FinishedClaim], now: datetime) -> tuple[list[FinishedClaim], Query]:
    """The merge rule: the results of the claims whose product is still pending, folded into the
    document's products (in place); those claims, and the update that writes them with the
    request's counters. Each product is counted once, however often a merge is run."""
    products = document["products"]
    folded = [
        c for c in claims if c["index"] < len(products) and products[c["index"]]["status"] == ProductStatus.PENDING
    ]
    counters = dict.fromkeys(
        ("products_done", "images_done", "images_failed", "images_reused", "bytes_in", "bytes_out"), 0
    )
    for claim in folded:
        result = claim["result"]
        product = products[claim["index"]]
        product["status"], product["output_keys"] = result["status"], result["output_keys"]
        product["errors"], product["attempts"] = result["errors"], claim["attempts"]
        counters["products_done"] += 1
        counters["images_done"] += result["images"]
        counters["images_failed"] += result["images_failed"]
        counters["images_reused"] += result.get("images_reused", 0)
        counters["bytes_in"] += result.get("bytes_in", 0)
        counters["bytes_out"] += result.get("bytes_out", 0)
    return folded, {"$set": {"products": products, "updated_at": now}, "$inc": {**counters, REVISION: 1}}


def merge(request_id: str, claims: list[FinishedClaim], now: datetime) -> Program[list[FinishedClaim]]:
    """Fold product results into the request document in one write; the claims now merged.

    The products are read, and written back whole with the results in, unless another write
    changed them meanwhile (then they are read again). Safe to run twice or concurrently: a result
    is folded in only while its product is pending. Written whole rather than field by field since
    the embedded server updates a path at a time: folding 200 results into a 200-product request
    took it 255 ms by paths, 9 ms whole, read included (75 against 440 ms with 2,000 products).
    """
    for _ in range(MERGE_RETRIES):
        if not claims:
            return []
        document = yield from FindOne[MergeView](COLLECTION, {"_id": request_id}, {"products": 1, REVISION: 1})
        if document is None:
            return []
        claims, update = merge_update(document, claims, now)
        if not claims:
            return []
        merged = yield from UpdateOne(COLLECTION, {"_id": request_id, **unchanged_since(document)}, update)
        if merged.modified:
            return claims
    return []


@dataclass(frozen=True)
class Finished:
    """A request this call finished: its final status, and whether a webhook is to be delivered."""

    status: RequestStatus
    has_webhook: bool


class Counters(TypedDict):
    products_total: int
    products_done: int
    images_total: int
    images_failed: int
    webhook: NotRequired[WebhookDocument]  # its state only; absent (projected from null) without one


class ProductCounts(TypedDict):
    products_total: int
    products_done: int


def products_left(request_id: str) -> Program[int]:
    """How many of the request's products have no result in its document yet (0 if it is gone)."""
    counts = yield from FindOne[ProductCounts](
        COLLECTION, {"_id": request_id}, {"products_total": 1, "products_done": 1}
    )
    return 0 if counts is None else counts["products_total"] - counts["products_done"]


def finalize(request_id: str, now: datetime) -> Program[Finished | None]:
    """Finish a request whose products are all done; what it ended as, if this call finished it.

    Only one caller can move it out of `processing`, so the webhook is started once.
    """
    # A request its caller cancelled is finished by its cancel (finish_cancelled), as `cancelled`.
    counts = yield from FindOne[Counters](
        COLLECTION,
        {"_id": request_id, "status": RequestStatus.PROCESSING.value, "cancel_requested_at": {"$exists": False}},
        {"products_total": 1, "products_done": 1, "images_total": 1, "images_failed": 1, "webhook.state": 1},
    )
    if counts is None or counts["products_done"] < counts["products_total"]:
        return None
    status = final_status(counts["images_total"], counts["images_failed"])
    has_webhook = bool(counts.get("webhook"))
    update: dict[str, object] = {"status": status.value, "completed_at": now, "updated_at": now}
    if has_webhook:
        # The sweeper's grace for a lost delivery counts from here.
        update["webhook.next_attempt_at"] = now
    finished = yield from UpdateOne(
        COLLECTION,
        {
            "_id": request_id,
            "status": RequestStatus.PROCESSING.value,
            "products_done": counts["products_total"],
            "cancel_requested_at": {"$exists": False},
        },
        {"$set": update},
    )
    return Finished(status, has_webhook) if finished.modified else None


def touch(request_id: str, now: datetime) -> UpdateOne:
    """Count as progress: the sweeper takes a request without any for stalled."""
    return UpdateOne(COLLECTION, {"_id": request_id}, {"$set": {"updated_at": now}})


# -- what the sweeper looks for -------------------------------------------------------------------


class RequestId(TypedDict):
    _id: str


class RetentionCandidate(RequestId):
    status: str  # a RequestStatus
    deleted_at: NotRequired[datetime]


class CancelCandidate(RequestId):
    status: str  # a RequestStatus
    owner: NotRequired[str]


class RequestProgress(TypedDict):
    _id: str
    updated_at: datetime
    products_total: int
    products_done: int
    owner: NotRequired[str]
    cancel_requested_at: NotRequired[datetime]


@dataclass(frozen=True)
class UnfinishedRequest:
    """A request in `processing`, as the sweeper weighs it."""

    request_id: str
    all_products_in: bool
    last_progress_at: datetime
    owner: str | None = None
    cancelling: bool = False


def stalled_pending(older_than: datetime) -> Program[list[str]]:
    """Requests accepted but not started since `older_than`: their message may be lost."""
    found = yield from Find[RequestId](
        COLLECTION, {"status": RequestStatus.PENDING.value, "updated_at": {"$lt": older_than}}, {"_id": 1}
    )
    return [document["_id"] for document in found]


def processing() -> Program[list[UnfinishedRequest]]:
    """Unfinished requests, from their counters (not their products)."""
    found = yield from Find[RequestProgress](
        COLLECTION,
        {"status": RequestStatus.PROCESSING.value},
        {"updated_at": 1, "products_total": 1, "products_done": 1, "owner": 1, "cancel_requested_at": 1},
    )
    return [unfinished(document) for document in found]


def unfinished(document: RequestProgress) -> UnfinishedRequest:
    return UnfinishedRequest(
        document["_id"],
        document["products_done"] >= document["products_total"],
        document["updated_at"],
        document.get("owner"),
        "cancel_requested_at" in document,
    )


# -- the webhook's delivery -----------------------------------------------------------------------


class DueDelivery(TypedDict):
    _id: str
    status: str
    webhook: WebhookDocument  # its lease only


def due_webhooks(due_before: datetime, now: datetime) -> Program[list[str]]:
    """Finished requests whose delivery is due, and nobody is attempting. Found by the `due_webhooks`
    index; the request's state and the delivery's lease are decided here, since either in the query
    makes the embedded server read every request, products and all, at each sweep."""
    found = yield from Find[DueDelivery](
        COLLECTION,
        {"webhook.state": WebhookState.PENDING.value, "webhook.next_attempt_at": {"$lt": due_before}},
        {"status": 1, "webhook.lease_expires_at": 1},
    )
    return [
        document["_id"]
        for document in found
        if RequestStatus(document["status"]).is_final and not is_live(document["webhook"]["lease_expires_at"], now)
    ]


@dataclass(frozen=True)
class Delivery:
    """A delivery taken for one attempt: where to, under which message id, after how many attempts,
    and the finished request it tells of."""

    url: str
    message_id: str
    attempts_made: int
    request: RequestDocument


def claim_webhook(request_id: str, now: datetime, hold_seconds: float) -> Program[Delivery | None]:
    """Take a due delivery of a finished request for one attempt; None if it is not due."""
    document = yield from FindOneAndUpdate[RequestDocument](
        COLLECTION,
        {
            "_id": request_id,
            "status": {"$in": FINAL_STATUS_VALUES},
            "webhook.state": WebhookState.PENDING.value,
            # A second of slack: a delivery scheduled with a countdown may run a hair early.
            "webhook.next_attempt_at": {"$lte": now + timedelta(seconds=1)},
            "webhook.lease_expires_at": no_live_lease(now),
        },
        {"$set": {"webhook.lease_expires_at": lease_until(now, hold_seconds)}},
    )
    if document is None or document["webhook"] is None:
        return None
    webhook = document["webhook"]
    return Delivery(webhook["url"], webhook["message_id"], webhook["attempts"], document)


def record_webhook_attempt(
    request_id: str,
    message_id: str,
    *,
    attempts: int,
    state: WebhookState,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> Program[bool]:
    """Keep an attempt's outcome, under the delivery's message id: a replaced webhook never takes it."""
    recorded = yield from UpdateOne(
        COLLECTION,
        {"_id": request_id, "webhook.message_id": message_id},
        {
            "$set": {
                "webhook.attempts": attempts,
                "webhook.state": state.value,
                "webhook.last_status_code": status_code,
                "webhook.last_error": error,
                "webhook.next_attempt_at": next_attempt_at,
                "webhook.lease_expires_at": None,
            }
        },
    )
    return recorded.modified == 1


# -- a request's life at its caller's wish: list, cancel, retry, delete; the retention ----------


def newest_first(
    owner: str | None, status: RequestStatus | None, limit: int, after: tuple[datetime, str] | None
) -> Find[RequestSummary]:
    """A page of the caller's requests (everyone's with keys off), newest first: at most `limit`,
    those after the (created_at, id) of the previous page's last one."""
    query: dict[str, object] = {**NOT_DELETED}
    if owner is not None:
        query["owner"] = owner
    if status is not None:
        query["status"] = status.value
    if after is not None:
        created_at, request_id = after
        query["$or"] = [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": request_id}}]
    return Find[RequestSummary](
        COLLECTION, query, WITHOUT_PRODUCTS, sort=[("created_at", DESCENDING), ("_id", DESCENDING)], limit=limit
    )


def ask_to_cancel(request_id: str, owner: str | None, now: datetime) -> FindOneAndUpdate[RequestSummary]:
    """Note that the caller wants an unfinished request stopped; None if it is not (found, or final)."""
    return FindOneAndUpdate[RequestSummary](
        COLLECTION,
        {**visible(request_id, owner), "status": {"$in": UNFINISHED_STATUS_VALUES}},
        {"$set": {"cancel_requested_at": now, "updated_at": now}},
        projection=WITHOUT_PRODUCTS,
    )


class CancelView(TypedDict):
    """What finishing a cancelled request reads: each product's state and image slots, the counters."""

    _id: str
    updated_at: datetime
    products: list[ProductDocument]  # status and output_keys only
    products_total: int
    images_total: int
    images_failed: int
    webhook: NotRequired[WebhookDocument]  # its state only


def finish_cancelled(request_id: str, now: datetime) -> Program[Finished | None]:
    """End a cancelled request: every product not done is failed, each of its images `cancelled`
    (so it counts as done, and the percentage reaches 100); the request `cancelled`, final. What
    results are already in are merged first (the caller's business); this runs once."""
    for _ in range(MERGE_RETRIES):
        document = yield from FindOne[CancelView](
            COLLECTION,
            {"_id": request_id, "status": {"$in": UNFINISHED_STATUS_VALUES}, "cancel_requested_at": {"$exists": True}},
            {"updated_at": 1, "products.status": 1, "products.output_keys": 1, "products_total": 1,
             "images_total": 1, "images_failed": 1, "webhook.state": 1},
        )  # fmt: skip
        if document is None:
            return None
        fields: dict[str, object] = {
            "status": RequestStatus.CANCELLED.value,
            "completed_at": now,
            "updated_at": now,
            "products_done": document["products_total"],
            "images_done": document["images_total"],
        }
        never_done = 0
        for index, product in enumerate(document["products"]):
            if product["status"] == ProductStatus.PENDING:
                slots = len(product["output_keys"])
                never_done += slots
                fields[product_path(index, "status")] = ProductStatus.FAILED.value
                fields[product_path(index, "errors")] = [
                    {"index": position, "message": CANCELLED_IMAGE} for position in range(slots)
                ]
        fields["images_failed"] = document["images_failed"] + never_done
        has_webhook = bool(document.get("webhook"))
        if has_webhook:
            fields["webhook.next_attempt_at"] = now
        # Only if no merge came in between; else read again. Ended, it is no longer being cancelled.
        ended = yield from UpdateOne(
            COLLECTION,
            {"_id": request_id, "updated_at": document["updated_at"]},
            {"$set": fields, "$unset": {"cancel_requested_at": ""}, "$inc": {REVISION: 1}},
        )
        if ended.modified:
            return Finished(RequestStatus.CANCELLED, has_webhook)
    return None


@dataclass(frozen=True)
class CancelledRequest:
    request_id: str
    owner: str | None


def cancelling(asked_before: datetime) -> Program[list[CancelledRequest]]:
    """Requests whose caller asked them to stop before then and that are not final yet."""
    # The state is checked here, not in the query, so that it is answered from `being_cancelled`.
    found = yield from Find[CancelCandidate](
        COLLECTION, {"cancel_requested_at": {"$lt": asked_before}}, {"_id": 1, "owner": 1, "status": 1}
    )
    return [
        CancelledRequest(document["_id"], document.get("owner"))
        for document in found
        if not RequestStatus(document["status"]).is_final
    ]


class RetryRefused(StrEnum):
    NOT_FOUND = "not found"
    NOT_FINAL = "not final"
    NOTHING_FAILED = "nothing failed"


class RetryView(TypedDict):
    _id: str
    status: str
    updated_at: datetime
    products: list[ProductDocument]  # status, errors and output_keys only
    webhook: WebhookDocument | None


def retry(request_id: str, owner: str | None, now: datetime) -> Program[RetryRefused | None]:
    """Make a final request's failed images (those a cancel left undone among them) pending again,
    in the same request; the rest keep their outputs. Their products' counts are taken off the
    request's, since each product's result is merged whole again, with a new webhook delivery.
    None when done; else why not. The request is left `pending`, for `control.process_request`."""
    document = yield from FindOne[RetryView](
        COLLECTION,
        visible(request_id, owner),
        {"status": 1, "updated_at": 1, "products.status": 1, "products.errors": 1, "products.output_keys": 1,
         "webhook": 1},
    )  # fmt: skip
    if document is None:
        return RetryRefused.NOT_FOUND
    if not RequestStatus(document["status"]).is_final:
        return RetryRefused.NOT_FINAL
    products = document["products"]
    again = [index for index, product in enumerate(products) if product["errors"]]
    if not again:
        return RetryRefused.NOTHING_FAILED
    results = yield from recorded_results(request_id, again)
    taken_off = dict.fromkeys(("products_done", "images_done", "images_failed", "images_reused", "bytes_in",
                               "bytes_out"), 0)  # fmt: skip
    fields: dict[str, object] = {"status": RequestStatus.PENDING.value, "completed_at": None, "updated_at": now}
    for index in again:
        result = results.get(index)
        taken_off["products_done"] += 1
        taken_off["images_done"] += len(products[index]["output_keys"])
        taken_off["images_failed"] += len(products[index]["errors"])
        if result is not None:
            taken_off["images_reused"] += result.get("images_reused", 0)
            taken_off["bytes_in"] += result.get("bytes_in", 0)
            taken_off["bytes_out"] += result.get("bytes_out", 0)
        fields[product_path(index, "status")] = ProductStatus.PENDING.value
    webhook = document["webhook"]
    if webhook is not None:
        fields["webhook"] = new_webhook(webhook["url"], now)
    retried = yield from UpdateOne(
        COLLECTION,
        {"_id": request_id, "status": document["status"], "updated_at": document["updated_at"]},
        {
            "$set": fields,
            "$inc": {"retries": 1, REVISION: 1, **{name: -count for name, count in taken_off.items()}},
            "$unset": {"cancel_requested_at": ""},
        },
    )
    if not retried.modified:
        return RetryRefused.NOT_FINAL  # changed meanwhile: another retry won
    yield from reopen_claims(request_id, again)
    return None


def ask_to_delete(request_id: str, owner: str | None, now: datetime) -> FindOneAndUpdate[RequestSummary]:
    """Mark a final request deleted: from now on it is not found; None if it is not (found, or final)."""
    return FindOneAndUpdate[RequestSummary](
        COLLECTION,
        {**visible(request_id, owner), "status": {"$in": FINAL_STATUS_VALUES}},
        {"$set": {"deleted_at": now}},
        projection=WITHOUT_PRODUCTS,
    )


def being_deleted(marked_before: datetime, limit: int) -> Program[list[str]]:
    """Requests marked deleted before then whose documents are still there, at most `limit`."""
    found = yield from Find[RequestId](COLLECTION, {"deleted_at": {"$lt": marked_before}}, {"_id": 1}, limit=limit)
    return [document["_id"] for document in found]


def past_retention(completed_before: datetime, now: datetime, limit: int) -> Program[list[str]]:
    """Mark deleted the oldest final requests, up to `limit`, that finished before `completed_before`
    (RETENTION_DAYS ago): each answers 404 from now on. Their ids, to delete."""
    # Found by `by_completion` alone, the rest decided here: SecantusDB scans every document for
    # a query that adds the state or the deletion mark to the date.
    found = yield from Find[RetentionCandidate](
        COLLECTION,
        {"completed_at": {"$lt": completed_before}},
        {"status": 1, "deleted_at": 1},
        sort=[("completed_at", ASCENDING)],
        limit=limit,
    )
    expired = [d["_id"] for d in found if RequestStatus(d["status"]).is_final and "deleted_at" not in d]
    if expired:
        yield from UpdateMany(COLLECTION, {"_id": {"$in": expired}, **NOT_DELETED}, {"$set": {"deleted_at": now}})
    return expired


def deleted(request_id: str) -> Program[bool]:
    """Whether the request is deleted, or being deleted."""
    found = yield from FindOne[RetentionCandidate](COLLECTION, {"_id": request_id}, {"status": 1, "deleted_at": 1})
    return found is None or "deleted_at" in found


def exists(request_id: str) -> Program[bool]:
    """Whether the request's document is still there (deleted or not)."""
    found = yield from FindOne[RequestId](COLLECTION, {"_id": request_id}, {"_id": 1})
    return found is not None


def delete(request_id: str) -> DeleteMany:
    """The request document, once its images and its claims are gone."""
    return DeleteMany(COLLECTION, {"_id": request_id, "deleted_at": {"$exists": True}})
