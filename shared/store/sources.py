"""The `sources` collection: what the service remembers of the images it has fetched, per owner, so
that a catalogue uploaded again reuses what did not change (CONTRACT §10).

One document per owner (API key) and image URL: the validators the host sent (`ETag`,
`Last-Modified`), the SHA-256 of the body, and the output stored from it, under the fingerprint of
the codec settings that made it. A re-import asks the host with those validators; a `304`, or a body
with the same SHA-256, means the remembered output is copied under the new request's key instead of
decoding and encoding the image again. Owners never share a document: the owner is part of its id.

The documents are written in batches by the merge of finished products (never once per product),
point at the newest copy of each output, and expire `REUSE_MEMORY_DAYS` after they were last used
(a TTL index). Deleting a request forgets the outputs that pointed into it.
"""

import hashlib
from datetime import datetime
from typing import TypedDict

from pymongo import ASCENDING, IndexModel

from shared.store.operations import CreateIndexes, DeleteMany, Find, Program, UpsertAll

COLLECTION = "sources"

INDEXES = [
    # Each document expires at its own `expires_at`, pushed back every time it is used.
    IndexModel([("expires_at", ASCENDING)], name="expire_unused", expireAfterSeconds=0),
    IndexModel([("output.request_id", ASCENDING)], name="outputs_by_request"),
]


class RememberedOutput(TypedDict):
    """The output stored from a source: where, under which codec settings, and what it is."""

    key: str
    request_id: str  # the request whose key it is: deleting that request forgets it
    fingerprint: str  # of the codec settings that made it (image_codec.fingerprint)
    format: str
    extension: str
    width: int
    height: int
    bytes_out: int


class SourceDocument(TypedDict):
    _id: str  # source_id(owner, url)
    etag: str | None
    last_modified: str | None
    sha256: str  # of the body
    bytes_in: int
    output: RememberedOutput
    expires_at: datetime


def source_id(owner: str | None, url: str) -> str:
    """One id per owner and URL, of a fixed length however long the URL: the owner's digest (or
    nothing, with keys off) and the URL, hashed together."""
    return hashlib.sha256(f"{owner or ''}\x00{url}".encode()).hexdigest()


def ensure_indexes() -> CreateIndexes:
    return CreateIndexes(COLLECTION, INDEXES)


def remembered(owner: str | None, urls: list[str], fingerprint: str) -> Program[dict[str, SourceDocument]]:
    """What is remembered of these URLs for this owner, by URL: only sources whose output was made
    with the codec settings of `fingerprint` (any other must be processed again anyway)."""
    ids = {source_id(owner, url): url for url in urls}
    found = yield from Find[SourceDocument](COLLECTION, {"_id": {"$in": list(ids)}})
    return {ids[source["_id"]]: source for source in found if source["output"]["fingerprint"] == fingerprint}


def remember(sources: list[SourceDocument]) -> UpsertAll:
    return UpsertAll(COLLECTION, sources)


def forget_outputs_of(request_id: str) -> DeleteMany:
    """Sources whose remembered output is stored under this request's keys, which are going away."""
    return DeleteMany(COLLECTION, {"output.request_id": request_id})
