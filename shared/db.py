"""Database access shared by both services: clients, the collection and its indexes.

The API uses PyMongo's async client and the worker the sync one; both run the same
queries, so the index definitions live here once.
"""

from datetime import datetime
from typing import Any, TypedDict

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, MongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.collection import Collection

from shared.settings import Settings

REQUESTS = "requests"
# One small document per product being worked on: its lease, attempt count and, once
# done, its result until it is merged into the request document. Writing these instead
# of the request document keeps a product's cost independent of the request's size.
PRODUCT_CLAIMS = "product_claims"
# The claim's field with each image's details once done (the processing log), by position.
IMAGE_LOG = "image_log"

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
]

CLAIM_INDEXES = [
    IndexModel([("request_id", ASCENDING), ("merged", ASCENDING)], name="unmerged_by_request"),
    IndexModel([("done", ASCENDING), ("lease_expires_at", ASCENDING)], name="expired_leases"),
]


class ClientOptions(TypedDict, total=False):
    """The MongoClient keyword options both services set (typed, so `**options` type-checks)."""

    tz_aware: bool
    serverSelectionTimeoutMS: int
    connectTimeoutMS: int
    timeoutMS: int
    socketTimeoutMS: int


CLIENT_OPTIONS: ClientOptions = {"tz_aware": True, "serverSelectionTimeoutMS": 5_000, "connectTimeoutMS": 5_000}
# Every operation of the API ends within 5 s, server selection and a server that stopped
# answering included, so a route answers (503) within the contract's 10 s. PyMongo also
# sends it to the server as maxTimeMS, which SecantusDB accepts on every command the API runs.
API_CLIENT_OPTIONS: ClientOptions = {**CLIENT_OPTIONS, "timeoutMS": 5_000}
# The worker waits longer for one network read (a merge of a large request may take seconds
# on the embedded server), and bounds each read rather than each operation: a timeoutMS
# would bound the lifetime of a whole cursor the sweeper walks.
WORKER_CLIENT_OPTIONS: ClientOptions = {**CLIENT_OPTIONS, "socketTimeoutMS": 30_000}


def claim_id(request_id: str, index: int) -> str:
    """The id of a product's claim document: the request and the product's index in it."""
    return f"{request_id}:{index}"


def no_live_lease(now: datetime) -> dict[str, Any]:
    """The condition on a lease's expiry field that no live lease holds: null, missing or past.

    One condition on the field rather than an $or of two, for the embedded MongoDB-compatible
    server: it finds a document by `_id` only when no top-level $or sits beside it, and scans
    the whole collection otherwise (measured: 20 ms per product claim among 2,000 claims, growing
    with them, against 1 ms). Whoever filters by `_id` in this file's collections avoids $or.
    """
    return {"$not": {"$gt": now}}


def has_live_lease(claim: dict[str, Any], now: datetime) -> bool:
    """What `no_live_lease` leaves out, decided in Python on a claim read by another condition."""
    lease: datetime | None = claim["lease_expires_at"]
    return lease is not None and lease > now


def mongodb_url(settings: Settings) -> str:
    if not settings.service.mongodb_url:
        raise RuntimeError("MONGODB_URL is not set: start the service with `make run`, which sets it")
    return settings.service.mongodb_url


def sync_client(settings: Settings) -> MongoClient[dict[str, Any]]:
    return MongoClient(mongodb_url(settings), appname="image-worker", **WORKER_CLIENT_OPTIONS)


def async_client(settings: Settings) -> AsyncMongoClient[dict[str, Any]]:
    return AsyncMongoClient(mongodb_url(settings), appname="image-api", **API_CLIENT_OPTIONS)


def requests_collection(client: MongoClient[dict[str, Any]], settings: Settings) -> Collection[dict[str, Any]]:
    return client[settings.service.mongodb_database][REQUESTS]


def claims_collection(client: MongoClient[dict[str, Any]], settings: Settings) -> Collection[dict[str, Any]]:
    return client[settings.service.mongodb_database][PRODUCT_CLAIMS]


def async_requests_collection(
    client: AsyncMongoClient[dict[str, Any]], settings: Settings
) -> AsyncCollection[dict[str, Any]]:
    return client[settings.service.mongodb_database][REQUESTS]


def async_claims_collection(
    client: AsyncMongoClient[dict[str, Any]], settings: Settings
) -> AsyncCollection[dict[str, Any]]:
    return client[settings.service.mongodb_database][PRODUCT_CLAIMS]
