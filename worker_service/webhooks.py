"""Webhook signing and delivery, following the Standard Webhooks specification.

Every attempt of one delivery carries the same `webhook-id` and is signed afresh with
its own timestamp. Redirects are not followed, and the receiver's address passes the
same guard as image URLs. The receiver is a stranger's server: an attempt ends at
`WEBHOOK_TIMEOUT_SECONDS` of wall-clock time however slowly it answers, and at most
64 KiB of its answer is read.
"""

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TypedDict

import httpx
from standardwebhooks import Webhook

from shared.address_guard import guarded_client
from shared.models import WebhookState, utcnow
from shared.settings import NetworkSettings, WebhookSettings
from shared.storage import Storage
from shared.store.requests import RequestDocument
from shared.views import output_urls_of, progress_of
from worker_service.deadline import DeadlineNetworkBackend, deadline

EVENT_TYPE = "request.completed"
# Nothing in the answer matters beyond its status; a little of it is read so that a
# receiver that answers at once is not cut off mid-body, never more.
MAX_ANSWER_BYTES = 64 * 1024


def after_attempt(delivered: bool, attempts_made: int, settings: WebhookSettings) -> tuple[WebhookState, float | None]:
    """The delivery's state after an attempt, and the seconds until the next one (None: no more)."""
    if delivered:
        return WebhookState.DELIVERED, None
    if attempts_made >= settings.max_attempts:
        return WebhookState.FAILED, None
    # The base delay, doubling after each failure.
    return WebhookState.PENDING, settings.retry_base_seconds * 2.0 ** (attempts_made - 1)


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    status_code: int | None
    error: str | None


class ProductOutputs(TypedDict):
    serial_number: int
    product_name: str
    output_image_urls: list[str | None]


def payload(document: RequestDocument, storage: Storage, download_url: str) -> dict[str, object]:
    """The event's body (a JSON object), as Standard Webhooks lays it out: type, timestamp, data."""
    products: list[ProductOutputs] = [
        {
            "serial_number": p["serial_number"],
            "product_name": p["product_name"],
            "output_image_urls": output_urls_of(p, storage),
        }
        for p in document["products"]
    ]
    return {
        "type": EVENT_TYPE,
        "timestamp": utcnow().isoformat(),
        "data": {
            "request_id": document["_id"],
            "status": document["status"],
            "progress": progress_of(document).model_dump(),
            "completed_at": document["completed_at"].isoformat() if document["completed_at"] else None,
            "download_url": download_url,
            "output_images": [url for p in products for url in p["output_image_urls"] if url],
            "products": products,
        },
    }


def signed_headers(message_id: str, body: str, secret: str | None, at: datetime) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
    }
    if secret:
        headers["webhook-signature"] = Webhook(secret).sign(message_id, at, body)
    return headers


def encode(body: dict[str, object]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def send(url: str, message_id: str, body: str, settings: WebhookSettings, network: NetworkSettings) -> DeliveryResult:
    """One attempt: any 2xx is success; anything else, or no whole answer in time, is not."""
    headers = signed_headers(message_id, body, settings.secret, utcnow())
    limit = settings.timeout_seconds
    try:
        with (
            deadline(limit),
            guarded_client(
                network.allow_private_networks,
                timeout=httpx.Timeout(limit),
                follow_redirects=False,
                wrap_backend=DeadlineNetworkBackend,
            ) as client,
            client.stream("POST", url, content=body.encode(), headers=headers) as response,
        ):
            read_answer(response)
    except httpx.TimeoutException:
        return DeliveryResult(False, None, f"no answer within {limit:g} s")
    except Exception as error:  # noqa: BLE001 - whatever went wrong, the attempt failed and is retried
        return DeliveryResult(False, None, describe(error))
    if 200 <= response.status_code < 300:
        return DeliveryResult(True, response.status_code, None)
    return DeliveryResult(False, response.status_code, f"HTTP {response.status_code}")


def read_answer(response: httpx.Response) -> None:
    """Read the answer up to `MAX_ANSWER_BYTES`: whatever follows is left unread."""
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received >= MAX_ANSWER_BYTES:
            return


def describe(error: Exception) -> str:
    cause = error.__cause__ or error.__context__
    return str(cause or error) or type(error).__name__
