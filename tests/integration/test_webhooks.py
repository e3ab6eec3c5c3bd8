"""Webhook delivery end to end: signed per Standard Webhooks, retried, its state in the status."""

import json

import httpx
from standardwebhooks import Webhook

from tests.conftest import WEBHOOK_SECRET
from tests.support.client import accepted_id, product_csv, status, wait_final
from tests.support.stack import wait_until


def verified(delivery) -> dict:
    """The body, after checking the signature as a receiver would (raises if it is wrong)."""
    return Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)


def test_delivery_is_signed_and_carries_the_result(stack, image_server, webhook_receiver):
    hook = webhook_receiver.hook("signed")
    request_id = accepted_id(
        stack.api,
        product_csv([(1, "SKU1", [image_server.image("photo.jpg"), f"{image_server.url}/status/404"])]),
        webhook_url=hook,
    )
    final = wait_final(stack.api, request_id)
    [delivery] = wait_until(lambda: webhook_receiver.received("signed"), 30, message="the webhook")

    body = verified(delivery)
    assert body["type"] == "request.completed"
    data = body["data"]
    assert data["request_id"] == request_id
    assert data["status"] == "completed_with_errors"
    assert data["progress"] == final["progress"]
    assert data["download_url"] == f"{stack.api}/download/{request_id}"
    assert data["output_images"] == [final["products"][0]["output_image_urls"][0]]
    assert data["products"] == [
        {"serial_number": 1, "product_name": "SKU1", "output_image_urls": final["products"][0]["output_image_urls"]}
    ]
    assert delivery.headers["webhook-id"].startswith("msg_")
    webhook = wait_until(
        lambda: (w := status(stack.api, request_id)["webhook"]) and w["state"] == "delivered" and w,
        10,
        message="the delivered state",
    )
    assert webhook == {"url": hook, "state": "delivered", "attempts": 1, "last_status_code": 200}


def test_failed_deliveries_are_retried_with_the_same_id_and_fresh_signatures(stack, image_server, webhook_receiver):
    hook = webhook_receiver.hook("flaky", failures=2)
    request_id = accepted_id(stack.api, product_csv([(1, "SKU1", [image_server.image("tiny.jpg")])]), webhook_url=hook)
    wait_final(stack.api, request_id)
    deliveries = wait_until(
        lambda: (d := webhook_receiver.received("flaky", 2)) and len(d) >= 3 and d, 30, message="three attempts"
    )
    assert [d.answered for d in deliveries] == [500, 500, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    for delivery in deliveries:
        verified(delivery)
    webhook = wait_until(
        lambda: (w := status(stack.api, request_id)["webhook"])["state"] == "delivered" and w,
        10,
        message="the delivered state",
    )
    assert webhook["attempts"] == 3 and webhook["last_status_code"] == 200


def test_a_delivery_is_given_up_after_the_maximum_attempts(stack, image_server, webhook_receiver):
    hook = webhook_receiver.hook("down", failures=100)
    request_id = accepted_id(stack.api, product_csv([(1, "SKU1", [image_server.image("tiny.jpg")])]), webhook_url=hook)
    wait_final(stack.api, request_id)
    webhook = wait_until(
        lambda: (w := status(stack.api, request_id)["webhook"])["state"] == "failed" and w,
        40,
        message="the failed state",
    )
    assert webhook["attempts"] == 4  # WEBHOOK_MAX_ATTEMPTS in the test stack
    assert webhook["last_status_code"] == 500
    assert len(webhook_receiver.received("down", 100)) == 4


def test_a_webhook_registered_after_completion_is_delivered_at_once(stack, image_server, webhook_receiver):
    request_id = accepted_id(stack.api, product_csv([(1, "SKU1", [image_server.image("tiny.jpg")])]))
    wait_final(stack.api, request_id)
    response = httpx.post(
        f"{stack.api}/webhook", json={"request_id": request_id, "webhook_url": webhook_receiver.hook("late")}
    )
    assert response.status_code == 200
    [delivery] = wait_until(lambda: webhook_receiver.received("late"), 30, message="the late webhook")
    assert json.loads(delivery.body)["data"]["request_id"] == request_id
    verified(delivery)


def test_a_redirecting_receiver_is_not_followed(stack, image_server):
    redirecting = f"{image_server.url}/redirect/1/photo.jpg"
    request_id = accepted_id(
        stack.api, product_csv([(1, "SKU1", [image_server.image("tiny.jpg")])]), webhook_url=redirecting
    )
    wait_final(stack.api, request_id)
    webhook = wait_until(
        lambda: (w := status(stack.api, request_id)["webhook"])["state"] == "failed" and w,
        40,
        message="the failed state",
    )
    assert webhook["last_status_code"] == 302
