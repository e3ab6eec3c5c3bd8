"""Peers that misbehave on purpose (CONTRACT §5–§7): each costs at most its own deadline or its own image.

On a stack of its own, with a webhook deadline long enough that a receiver holding a
delivery would visibly hold up anything that shared its thread.
"""

import time
from collections.abc import Iterator

import pytest

from tests.support.client import accepted_id, product_csv, status, wait_final
from tests.support.stack import Stack, start_stack, wait_until

WEBHOOK_TIMEOUT = 10
DOWNLOAD_TIMEOUT = 5  # DOWNLOAD_TOTAL_TIMEOUT_SECONDS of the test stack; three attempts each
SLOW_RECEIVERS = 12


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("hostile"), {"WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT)}) as stack:
        yield stack


def webhook_of(stack: Stack, request_id: str) -> dict:
    return status(stack.api, request_id)["webhook"]


def test_slow_webhook_receivers_delay_no_other_request(hostile_stack, image_server, webhook_receiver):
    stack = hostile_stack
    slow = [
        accepted_id(
            stack.api,
            product_csv([(1, f"Slow{i}", [image_server.image("tiny.jpg")])]),
            webhook_url=f"{image_server.url}/slow_headers/{i}",
        )
        for i in range(SLOW_RECEIVERS)
    ]
    for request_id in slow:
        wait_final(stack.api, request_id, timeout=30)
    wait_until(lambda: image_server.hits["/slow_headers/11"], 10, message="the slow receivers to be called")

    # Every slow receiver now holds a delivery for up to its deadline; the next request goes on regardless.
    started = time.monotonic()
    hook = webhook_receiver.hook("beside-slow-ones")
    request_id = accepted_id(
        stack.api, product_csv([(1, "Normal", [image_server.image("tiny.jpg")])]), webhook_url=hook
    )
    assert wait_final(stack.api, request_id, timeout=30)["status"] == "completed"
    wait_until(lambda: webhook_receiver.received("beside-slow-ones"), 30, message="the normal webhook")
    assert time.monotonic() - started < WEBHOOK_TIMEOUT * 0.6

    # And each slow attempt ends at its deadline, recorded as failed, to be tried again later.
    first = wait_until(
        lambda: (w := webhook_of(stack, slow[0]))["attempts"] >= 1 and w,
        WEBHOOK_TIMEOUT + 10,
        message="the first slow attempt to end",
    )
    assert first["state"] == "pending" and first["last_status_code"] is None


def test_a_request_of_hostile_image_hosts_is_final_within_its_deadlines(hostile_stack, image_server):
    stack = hostile_stack
    hostile = {
        "slow headers": f"{image_server.url}/slow_headers/x.jpg",
        "endless body": f"{image_server.url}/endless/x.jpg",
        "huge answer": f"{image_server.url}/huge/200",
        "animation bomb": image_server.image("animation-bomb.gif"),
    }
    urls = [*hostile.values(), image_server.image("photo.jpg")]
    started = time.monotonic()
    request_id = accepted_id(stack.api, product_csv([(1, "Hostile", urls)]))
    other = accepted_id(stack.api, product_csv([(1, "Other", [image_server.image("photo2.jpg")])]))

    # The other customer's request does not wait for the hostile hosts' deadlines.
    assert wait_final(stack.api, other, timeout=30)["status"] == "completed"
    assert time.monotonic() - started < DOWNLOAD_TIMEOUT * 2

    body = wait_final(stack.api, request_id, timeout=60)
    took = time.monotonic() - started
    # Three attempts of at most DOWNLOAD_TIMEOUT each, their backoff, and the rest of the pipeline.
    assert took < 3 * DOWNLOAD_TIMEOUT + 10, took
    product = body["products"][0]
    messages = {error["url"]: error["message"] for error in product["errors"]}
    assert messages == {
        hostile["slow headers"]: f"timed out after {DOWNLOAD_TIMEOUT} s",
        hostile["endless body"]: f"timed out after {DOWNLOAD_TIMEOUT} s",
        hostile["huge answer"]: "image larger than 25 MiB",
        hostile["animation bomb"]: "animation of 55 frames of 2000×2000 (220,000,000 pixels) "
        "is over the 200,000,000-pixel limit",
    }
    assert product["output_image_urls"][-1] is not None
    assert body["status"] == "completed_with_errors"


def test_a_refused_address_is_named_in_the_log_only(hostile_stack, image_server):
    """The client learns that the address is not allowed; what it is, only the log says.

    (0.0.0.0 is refused even where private networks are allowed, as on this stack.)
    """
    stack = hostile_stack
    url = "http://0.0.0.0:9/x.jpg"
    body = wait_final(stack.api, accepted_id(stack.api, product_csv([(1, "Nowhere", [url])])), timeout=30)
    assert body["products"][0]["errors"] == [{"url": url, "message": "address not allowed"}]
    wait_until(
        lambda: "blocked address: 0.0.0.0 is unspecified" in (stack.log_dir / "worker.log").read_text(),
        5,
        message="the address in the worker's log",
    )
