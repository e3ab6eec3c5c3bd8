"""Each store module's queries as data: what they ask of MongoDB, read without a database."""

import hashlib
from datetime import UTC, datetime, timedelta

import blake3

from shared.models import ProductStatus, RequestStatus
from shared.store import product_claims, requests, sources
from shared.store.leases import is_live, no_live_lease
from shared.store.operations import FindOne, FindOneAndUpdate, Updated
from shared.store.product_claims import ClaimDocument, ProductWork

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
WORK = ProductWork("r1", 4, 5, ["https://img.example.com/a.jpg"])


def first(program):
    """The first operation a program sends."""
    return next(iter(program))


def claim_document(done: bool = False, merged: bool = False, lease: datetime | None = None) -> ClaimDocument:
    return {"_id": "r1:4", "request_id": "r1", "index": 4, "attempts": 1, "lease_expires_at": lease,
            "done": done, "merged": merged}  # fmt: skip


# -- leases ---------------------------------------------------------------------------------------


def test_a_lease_is_live_only_while_its_expiry_is_ahead() -> None:
    assert is_live(NOW + timedelta(seconds=1), NOW)
    assert not is_live(NOW, NOW)
    assert not is_live(None, NOW)
    assert no_live_lease(NOW) == {"$not": {"$gt": NOW}}


# -- requests -------------------------------------------------------------------------------------


def test_a_caller_sees_only_its_own_requests() -> None:
    not_deleted = {"deleted_at": {"$exists": False}}
    assert requests.find_summary("r1", None).filter == {"_id": "r1", **not_deleted}
    assert requests.find_summary("r1", "digest").filter == {"_id": "r1", "owner": "digest", **not_deleted}
    assert requests.find_page("r1", "digest", 0, 10).filter == {"_id": "r1", "owner": "digest", **not_deleted}
    webhook = requests.replace_webhook("r1", "digest", "https://h.example/", NOW)
    assert webhook.filter == {"_id": "r1", "owner": "digest", **not_deleted}


def test_a_summary_leaves_the_products_out_and_a_page_slices_them() -> None:
    assert requests.find_summary("r1", None).projection == {"products": 0}
    assert requests.find_page("r1", None, 100, 50).projection == {"products": {"$slice": [100, 50]}}


def test_a_request_starts_only_from_pending() -> None:
    start = first(requests.start("r1", NOW))
    assert isinstance(start, FindOneAndUpdate)
    assert start.filter == {"_id": "r1", "status": "pending", "cancel_requested_at": {"$exists": False}}
    assert start.update["$set"]["status"] == "processing"


def test_a_new_webhook_replaces_the_delivery_with_a_new_message_id() -> None:
    one = requests.replace_webhook("r1", None, "https://h.example/", NOW).update["$set"]["webhook"]
    two = requests.replace_webhook("r1", None, "https://h.example/", NOW).update["$set"]["webhook"]
    assert (one["state"], one["attempts"], one["next_attempt_at"]) == ("pending", 0, NOW)
    assert one["message_id"] != two["message_id"]


def test_a_webhook_is_claimed_only_when_final_due_and_not_leased() -> None:
    claim = first(requests.claim_webhook("r1", NOW, hold_seconds=40))
    assert claim.filter["status"] == {"$in": ["cancelled", "completed", "completed_with_errors", "failed"]}
    assert claim.filter["webhook.state"] == "pending"
    assert claim.filter["webhook.next_attempt_at"] == {"$lte": NOW + timedelta(seconds=1)}
    assert claim.filter["webhook.lease_expires_at"] == no_live_lease(NOW)
    assert claim.update == {"$set": {"webhook.lease_expires_at": NOW + timedelta(seconds=40)}}


def test_finalising_reads_the_counters_then_moves_the_request_out_of_processing_once() -> None:
    program = requests.finalize("r1", NOW)
    counters = next(program)
    not_cancelled = {"cancel_requested_at": {"$exists": False}}
    assert isinstance(counters, FindOne) and counters.filter == {"_id": "r1", "status": "processing", **not_cancelled}
    update = program.send({"products_total": 2, "products_done": 2, "images_total": 3, "images_failed": 1})
    assert update.filter == {"_id": "r1", "status": "processing", "products_done": 2, **not_cancelled}
    assert update.update["$set"]["status"] == "completed_with_errors"
    try:
        program.send(Updated(matched=1, modified=1))
    except StopIteration as finished:
        assert finished.value == requests.Finished(RequestStatus.COMPLETED_WITH_ERRORS, has_webhook=False)


def test_a_request_with_products_still_out_is_not_finalised() -> None:
    program = requests.finalize("r1", NOW)
    next(program)
    try:
        program.send({"products_total": 2, "products_done": 1, "images_total": 3, "images_failed": 0})
    except StopIteration as finished:
        assert finished.value is None


# -- product claims -------------------------------------------------------------------------------


def test_a_claim_is_taken_only_while_not_done_and_not_leased() -> None:
    claim = first(product_claims.claim(WORK, NOW, lease_seconds=60))
    assert claim.filter == {"_id": "r1:4", "done": False, "lease_expires_at": no_live_lease(NOW)}
    assert claim.upsert
    assert claim.update["$inc"] == {"attempts": 1}
    assert claim.update["$set"] == {"lease_expires_at": NOW + timedelta(seconds=60)}


def test_a_result_is_recorded_only_under_the_attempt_that_holds_the_claim() -> None:
    record = first(product_claims.record(WORK, 2, {}, [], [], NOW))
    assert record.filter == {"_id": "r1:4", "attempts": 2, "done": False}
    assert record.update["$set"]["lease_expires_at"] is None


def test_a_product_is_busy_while_leased_or_done_but_not_yet_merged() -> None:
    assert product_claims.is_busy(claim_document(lease=NOW + timedelta(seconds=5)), NOW)
    assert not product_claims.is_busy(claim_document(lease=NOW - timedelta(seconds=5)), NOW)
    assert product_claims.is_busy(claim_document(done=True), NOW)
    assert not product_claims.is_busy(claim_document(done=True, merged=True), NOW)


def test_an_unfinished_products_state_follows_its_lease() -> None:
    assert product_claims.unfinished_status(None, NOW) == ProductStatus.PENDING
    assert product_claims.unfinished_status(claim_document(lease=NOW + timedelta(1)), NOW) == ProductStatus.PROCESSING
    assert product_claims.unfinished_status(claim_document(lease=NOW), NOW) == ProductStatus.PENDING


def test_the_processing_log_reads_claims_by_id() -> None:
    read = first(product_claims.of_products("r1", [0, 3]))
    assert read.filter == {"_id": {"$in": ["r1:0", "r1:3"]}}


# -- sources -------------------------------------------------------------------------------------


def remembered_from(document: dict) -> dict:
    program = sources.remembered(None, ["https://img.example.com/a.jpg"], "f1")
    next(program)
    try:
        program.send([document])
    except StopIteration as found:
        return found.value
    raise AssertionError("remembered asked for more than one read")


def source_document(**digest: str) -> dict:
    output = {"key": "r0/1/0.jpg", "request_id": "r0", "fingerprint": "f1", "format": "JPEG", "extension": "jpg",
              "width": 1, "height": 1, "bytes_out": 1}  # fmt: skip
    identity = sources.source_id(None, "https://img.example.com/a.jpg")
    return {"_id": identity, "etag": None, "last_modified": None, "bytes_in": 4, "output": output,
            "expires_at": NOW, **digest}  # fmt: skip


def test_a_body_is_known_by_its_named_blake3_digest() -> None:
    assert sources.body_digest(b"body") == "blake3:" + blake3.blake3(b"body").hexdigest()
    remembered = remembered_from(source_document(digest=sources.body_digest(b"body")))
    assert remembered["https://img.example.com/a.jpg"]["digest"] == sources.body_digest(b"body")


def test_a_source_remembered_by_its_bare_sha256_matches_no_body() -> None:
    # Written before digests were named: its image is processed once more, and remembered anew.
    old = source_document(sha256=hashlib.sha256(b"body").hexdigest())
    digest = remembered_from(old)["https://img.example.com/a.jpg"]["digest"]
    assert digest == "sha256:" + hashlib.sha256(b"body").hexdigest() != sources.body_digest(b"body")
