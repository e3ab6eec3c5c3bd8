"""The Celery tasks: thin wrappers that claim work in MongoDB, do it, and record it."""

import logging
from datetime import timedelta

from celery import chord

from shared.queue import (
    DELIVER_WEBHOOK,
    FINALIZE_REQUEST,
    IMAGES_QUEUE,
    PROCESS_PRODUCT,
    PROCESS_REQUEST,
    SWEEP,
    enqueue_request,
    enqueue_webhook,
)
from shared.documents import utcnow
from worker_service import product_processing, repository, webhooks
from worker_service.celery_app import app
from worker_service.context import worker_context
from worker_service.sweeper import plan_sweep

log = logging.getLogger("worker.tasks")


def download_url(request_id: str) -> str:
    return f"{worker_context().settings.base_url}/api/v1/download/{request_id}"


@app.task(name=PROCESS_REQUEST)
def process_request(request_id: str) -> None:
    """Mark the request processing and fan out one task per product, finalised by a chord callback."""
    context = worker_context()
    products_total = repository.start_request(context.requests, request_id)
    if products_total is None:
        return
    header = [process_product.si(request_id, index).set(queue=IMAGES_QUEUE) for index in range(products_total)]
    chord(header)(finalize_request.si(request_id))
    log.info("request %s: %d products enqueued", request_id, products_total)


@app.task(name=PROCESS_PRODUCT)
def process_product(request_id: str, index: int) -> None:
    context = worker_context()
    settings = context.settings
    claim = repository.claim_product(context.requests, request_id, index, settings.product_lease_seconds)
    if claim is None:
        return
    if claim.attempt > settings.product_max_attempts:
        log.error("request %s: giving up product %s after %d attempts", request_id, claim.serial_number,
                  settings.product_max_attempts)
        outcomes = product_processing.given_up(claim, settings.product_max_attempts)
    else:
        outcomes = product_processing.process_product(context, request_id, claim)
    repository.record_product(context.requests, request_id, claim, outcomes)


@app.task(name=FINALIZE_REQUEST)
def finalize_request(request_id: str) -> None:
    document = repository.finalize_request(worker_context().requests, request_id)
    if document is None:
        return
    log.info("request %s: %s", request_id, document["status"])
    if document.get("webhook"):
        enqueue_webhook(app, request_id)


@app.task(name=DELIVER_WEBHOOK)
def deliver_webhook(request_id: str) -> None:
    context = worker_context()
    settings = context.settings
    hold = settings.webhook_timeout_seconds + 30
    document = repository.claim_webhook(context.requests, request_id, hold)
    if document is None:
        return
    webhook = document["webhook"]
    body = webhooks.encode(webhooks.payload(document, context.storage, download_url(request_id)))
    result = webhooks.send(webhook["url"], webhook["message_id"], body, settings)
    attempts = webhook["attempts"] + 1
    state, delay = webhooks.after_attempt(result, attempts, settings)
    recorded = repository.record_webhook_attempt(
        context.requests, request_id, webhook["message_id"], attempts=attempts, state=state,
        status_code=result.status_code, error=result.error,
        next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None)
    log.info("webhook of %s: attempt %d %s (%s)", request_id, attempts, state.value,
             result.status_code or result.error)
    if recorded and delay is not None:
        enqueue_webhook(app, request_id, countdown=delay)


@app.task(name=SWEEP, expires=60)
def sweep() -> None:
    plan = plan_sweep(worker_context())
    for request_id in plan.start_requests:
        enqueue_request(app, request_id)
    for request_id, index in plan.products:
        process_product.apply_async((request_id, index), queue=IMAGES_QUEUE)
    for request_id in plan.finalize:
        finalize_request.delay(request_id)
    for request_id in plan.webhooks:
        enqueue_webhook(app, request_id)
