"""Sharing the workers (CONTRACT §11) on a stack of its own with two API keys and two product threads.

A small request uploaded behind a large one is served at once, not after it; one owner's several
requests leave another owner half of the turns; a request whose products wait says where it stands.
"""

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.client import bearer, product_csv, wait_final
from tests.support.stack import Stack, start_stack

KEY_A, KEY_B = "sharing-key-a", "sharing-key-b"


@pytest.fixture(scope="module")
def sharing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {
        "API_KEYS": f"{KEY_A},{KEY_B}",
        "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
        "WORKER_CONCURRENCY": "2",
        "PRODUCTS_QUEUED_AHEAD": "1",
    }
    with start_stack(tmp_path_factory.mktemp("sharing-stack"), extra) as running:
        yield running


def submit(stack: Stack, key: str, urls_by_product: list[list[str]]) -> str:
    rows = [(serial, f"P{serial}", urls) for serial, urls in enumerate(urls_by_product, start=1)]
    files = {"file": ("products.csv", product_csv(rows).encode(), "text/csv")}
    response = httpx.post(f"{stack.api}/upload", files=files, headers=bearer(key), timeout=60)
    assert response.status_code == 202, response.text
    return response.json()["request_id"]


def status(stack: Stack, key: str, request_id: str) -> dict:
    return httpx.get(f"{stack.api}/status/{request_id}", params={"limit": 1}, headers=bearer(key), timeout=30).json()


def slow_products(image_server, count: int, seconds: float) -> list[list[str]]:
    token = uuid.uuid4().hex
    return [[f"{image_server.url}/delay/{seconds}/tiny.jpg?{token}-{i}"] for i in range(count)]


def quick_products(image_server, count: int) -> list[list[str]]:
    token = uuid.uuid4().hex
    return [[f"{image_server.image('tiny.jpg')}?{token}-{i}"] for i in range(count)]


def seconds_to_final(stack: Stack, key: str, request_id: str) -> float:
    started = time.monotonic()
    wait_final(stack.api, request_id, headers=bearer(key))
    return time.monotonic() - started


def test_a_small_request_is_served_at_once_behind_a_large_one(sharing_stack, image_server):
    alone = seconds_to_final(sharing_stack, KEY_A, submit(sharing_stack, KEY_A, quick_products(image_server, 2)))
    large = submit(sharing_stack, KEY_A, slow_products(image_server, 30, 0.5))
    time.sleep(1.5)
    small = submit(sharing_stack, KEY_A, quick_products(image_server, 2))

    behind = seconds_to_final(sharing_stack, KEY_A, small)

    assert behind <= 3 * alone + 2, (behind, alone)
    large_now = status(sharing_stack, KEY_A, large)
    assert large_now["status"] == "processing", "the small request waited for the large one"
    assert large_now["progress"]["products_done"] < 30
    wait_final(sharing_stack.api, large, headers=bearer(KEY_A), timeout=120)


def test_an_unfinished_request_says_where_it_stands_while_its_products_wait(sharing_stack, image_server):
    request_id = submit(sharing_stack, KEY_A, slow_products(image_server, 12, 0.5))
    time.sleep(1.0)
    body = status(sharing_stack, KEY_A, request_id)
    assert body["status"] == "processing"
    assert 0 < body["queue"]["products_waiting"] < 12
    assert body["queue"]["products_ahead"] >= 0
    scrape = httpx.get(f"{sharing_stack.base_url}/metrics", timeout=30).text
    assert any(line.startswith("image_service_products_waiting{owner=") for line in scrape.splitlines())
    final = wait_final(sharing_stack.api, request_id, headers=bearer(KEY_A), timeout=120)
    assert final["queue"] is None


def test_one_owners_requests_leave_another_owner_half_of_the_turns(sharing_stack, image_server):
    a_requests = [submit(sharing_stack, KEY_A, slow_products(image_server, 12, 0.3)) for _ in range(3)]
    time.sleep(0.5)
    b_request = submit(sharing_stack, KEY_B, slow_products(image_server, 12, 0.3))
    a_done_before = sum(status(sharing_stack, KEY_A, r)["progress"]["products_done"] for r in a_requests)

    wait_final(sharing_stack.api, b_request, headers=bearer(KEY_B), timeout=120)

    a_done_meanwhile = sum(status(sharing_stack, KEY_A, r)["progress"]["products_done"] for r in a_requests)
    a_done_meanwhile -= a_done_before
    # One turn in two: about as many of A's products as B's 12 went through meanwhile; in a single
    # queue, B's would have waited behind all 36 of A's.
    assert 4 <= a_done_meanwhile <= 20, a_done_meanwhile
    for request_id in a_requests:
        wait_final(sharing_stack.api, request_id, headers=bearer(KEY_A), timeout=120)
