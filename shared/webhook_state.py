"""A request's webhook delivery and its state: new, due, claimed, attempted, retried or given up.

The delivery lives in the request document (`webhook`), so the API that sets it, the
worker that sends it and the sweeper that finds a lost one agree on one record. One
attempt at a time: an attempt claims the delivery with a lease, and records its outcome
under the delivery's message id, so a replaced webhook never takes an old outcome.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.collection import Collection

from shared.db import no_live_lease
from shared.models import FINAL_STATUS_VALUES, WebhookState, utcnow
from shared.settings import WebhookSettings


def new_webhook(url: str) -> dict[str, Any]:
    """A webhook not yet delivered; its message id stays the same for every attempt."""
    return {
        "url": url,
        "state": WebhookState.PENDING.value,
        "message_id": f"msg_{uuid.uuid4().hex}",
        "attempts": 0,
        "last_status_code": None,
        "last_error": None,
        # Due at once; the delivery only starts once the request is final.
        "next_attempt_at": utcnow(),
        "lease_expires_at": None,
    }


def after_attempt(delivered: bool, attempts_made: int, settings: WebhookSettings) -> tuple[WebhookState, float | None]:
    """The delivery's state after an attempt, and the seconds until the next one (None: no more)."""
    if delivered:
        return WebhookState.DELIVERED, None
    if attempts_made >= settings.max_attempts:
        return WebhookState.FAILED, None
    # The base delay, doubling after each failure.
    return WebhookState.PENDING, settings.retry_base_seconds * 2.0 ** (attempts_made - 1)


def due_webhooks(requests: Collection[dict[str, Any]], due_before: datetime) -> list[str]:
    now = utcnow()
    return [
        d["_id"]
        for d in requests.find(
            {
                "status": {"$in": FINAL_STATUS_VALUES},
                "webhook.state": WebhookState.PENDING.value,
                "webhook.next_attempt_at": {"$lt": due_before},
                "webhook.lease_expires_at": no_live_lease(now),
            },
            {"_id": 1},
        )
    ]


def claim_webhook(requests: Collection[dict[str, Any]], request_id: str, hold_seconds: float) -> dict[str, Any] | None:
    """Take a due delivery of a finished request; the whole document, or None if not due."""
    now = utcnow()
    return requests.find_one_and_update(
        {
            "_id": request_id,
            "status": {"$in": FINAL_STATUS_VALUES},
            "webhook.state": WebhookState.PENDING.value,
            # A second of slack: a delivery scheduled with a countdown may run a hair early.
            "webhook.next_attempt_at": {"$lte": now + timedelta(seconds=1)},
            "webhook.lease_expires_at": no_live_lease(now),
        },
        {"$set": {"webhook.lease_expires_at": now + timedelta(seconds=hold_seconds)}},
        return_document=ReturnDocument.AFTER,
    )


def record_webhook_attempt(
    requests: Collection[dict[str, Any]],
    request_id: str,
    message_id: str,
    *,
    attempts: int,
    state: WebhookState,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> bool:
    result = requests.update_one(
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
    return result.modified_count == 1
