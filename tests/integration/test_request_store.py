"""The worker's MongoDB updates are safe to run twice, against the real embedded server."""

from dataclasses import dataclass

import pytest

from shared.documents import new_request, new_request_id
from worker_service import product_claims, request_store
from worker_service.product_claims import ImageOutcome, ProductWork


@dataclass
class Row:
    serial_number: int
    product_name: str
    input_image_urls: tuple[str, ...]


@pytest.fixture()
def collections(stack):
    with stack.mongo() as client:
        database = client["store_tests"]
        yield database["requests"], database["product_claims"]


def started_request(requests, products: int = 3) -> tuple[str, list[ProductWork]]:
    request_id = new_request_id()
    rows = [
        Row(i, f"P{i}", (f"https://img.test/{i}.jpg", f"https://img.test/{i}b.jpg")) for i in range(1, products + 1)
    ]
    requests.insert_one(new_request(request_id, rows, webhook_url=None, idempotency_key=None, file_sha256="0"))
    return request_id, request_store.start_request(requests, request_id)


def finish(claims, work: ProductWork, outcomes: list[ImageOutcome]) -> None:
    attempt = product_claims.claim(claims, work, lease_seconds=60)
    assert product_claims.record(claims, work, attempt, outcomes)


def test_a_product_is_claimed_by_one_worker_at_a_time(collections):
    requests, claims = collections
    _, works = started_request(requests)
    assert product_claims.claim(claims, works[0], lease_seconds=60) == 1
    assert product_claims.claim(claims, works[0], lease_seconds=60) is None
    assert product_claims.claim(claims, works[1], lease_seconds=60) == 1


def test_an_expired_lease_is_taken_over_and_the_old_attempt_cannot_record(collections):
    requests, claims = collections
    _, works = started_request(requests)
    first = product_claims.claim(claims, works[0], lease_seconds=-1)
    second = product_claims.claim(claims, works[0], lease_seconds=60)
    assert (first, second) == (1, 2)
    assert not product_claims.record(claims, works[0], first, [ImageOutcome(key="k")] * 2)
    assert product_claims.record(claims, works[0], second, [ImageOutcome(key="k")] * 2)
    assert product_claims.claim(claims, works[0], lease_seconds=60) is None


def test_merging_the_same_results_twice_counts_them_once(collections):
    requests, claims = collections
    request_id, works = started_request(requests)
    finish(claims, works[0], [ImageOutcome(key="a"), ImageOutcome(error="HTTP 404")])
    finish(claims, works[1], [ImageOutcome(key="b"), ImageOutcome(key="c")])
    staged = product_claims.unmerged(claims, request_id)
    assert len(request_store.merge_results(requests, request_id, staged)) == 2
    # A merge that crashed before marking its claims merged is run again, with one more result.
    finish(claims, works[2], [ImageOutcome(error="HTTP 500")] * 2)
    again = product_claims.unmerged(claims, request_id)
    assert [c["index"] for c in request_store.merge_results(requests, request_id, again)] == [2]

    document = requests.find_one({"_id": request_id})
    assert (document["products_done"], document["images_done"], document["images_failed"]) == (3, 6, 3)
    assert [p["status"] for p in document["products"]] == ["completed", "completed", "failed"]
    assert document["products"][0]["output_keys"] == ["a", None]
    assert document["products"][0]["errors"] == [{"index": 1, "message": "HTTP 404"}]


def test_a_request_is_finalised_once(collections):
    requests, claims = collections
    request_id, works = started_request(requests, products=1)
    finish(claims, works[0], [ImageOutcome(key="a"), ImageOutcome(error="HTTP 404")])
    assert request_store.finalize_request(requests, request_id) is None  # not merged yet
    request_store.merge_results(requests, request_id, product_claims.unmerged(claims, request_id))
    finished = request_store.finalize_request(requests, request_id)
    assert finished["status"] == "completed_with_errors"
    assert request_store.finalize_request(requests, request_id) is None
