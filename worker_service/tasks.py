"""The Celery tasks: thin wrappers that claim work in MongoDB, do it, and record it."""

import contextlib
import logging
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import redis
from celery import Signature, chord

from shared import metrics, request_events, webhook_state
from shared.models import WebhookState, utcnow
from shared.queue import (
    DELIVER_WEBHOOK,
    IMAGES_QUEUE,
    MERGE_RESULTS,
    PROCESS_PRODUCT,
    PROCESS_REQUEST,
    SWEEP,
    enqueue_request,
    enqueue_webhook,
)
from worker_service import context as worker_contexts
from worker_service import product_claims, product_processing, request_store, webhooks, worker_metrics
from worker_service.celery_app import app
from worker_service.context import WorkerContext, worker_context
from worker_service.product_claims import ProductWork
from worker_service.sweeper import plan_sweep

log = logging.getLogger("worker.tasks")
# Here rather than with the app: only workers import the tasks (beat and Flower do not).
worker_metrics.install()
worker_contexts.install()
MERGE_COST_FACTOR = 25
# A delivery attempt's outcome, by the state it leaves the webhook in.
ATTEMPT_OUTCOMES = {WebhookState.DELIVERED: "delivered", WebhookState.PENDING: "retry", WebhookState.FAILED: "given_up"}


def product_task(work: ProductWork) -> Signature[None]:
    return process_product.si(asdict(work)).set(queue=IMAGES_QUEUE)


# Results nobody reads are not stored; the product tasks' are, since the chord counts them.
@app.task(name=PROCESS_REQUEST, ignore_result=True)
def process_request(request_id: str) -> None:
    """Mark the request processing and fan out one task per product; the chord's callback finishes it."""
    works = request_store.start_request(worker_context().requests, request_id)
    if works is None:
        return
    chord([product_task(work) for work in works])(merge_results.si(request_id))
    log.info("request %s: %d products enqueued", request_id, len(works))


# No Celery time limits: every worker runs threads, which Celery cannot interrupt. Each wait of
# a product has a deadline of its own, and its codec work a process that is killed at its limit
# (worker_service/product_processing.py, codec_pool.py).
@app.task(name=PROCESS_PRODUCT)
def process_product(work: dict[str, Any]) -> None:
    context = worker_context()
    settings = context.settings
    product = ProductWork(**work)
    attempt = product_claims.claim(context.claims, product, settings.work.product_lease_seconds)
    if attempt is None:
        return
    if attempt > settings.work.product_max_attempts:
        log.error(
            "request %s: giving up product %s after %d attempts",
            product.request_id,
            product.serial_number,
            settings.work.product_max_attempts,
        )
        outcomes = product_processing.given_up(product, settings.work.product_max_attempts)
    else:
        outcomes = product_processing.process_product(context, product, attempt)
    if product_claims.record(context.claims, product, attempt, outcomes):
        product_processing.add_to_metrics(outcomes)
        schedule_merge(context, product.request_id)


def merge_key(request_id: str) -> str:
    return f"merge-scheduled:{request_id}"


def schedule_merge(context: WorkerContext, request_id: str) -> None:
    """Ask for a merge of finished products within the merge interval, once however many finish."""
    interval = context.settings.work.merge_interval_seconds
    try:
        first = context.redis.set(merge_key(request_id), 1, nx=True, px=int(interval * 1000))
    except redis.RedisError:
        log.warning("could not schedule a merge of %s; the sweeper will", request_id, exc_info=True)
        return
    if first:
        merge_results.apply_async((request_id,), countdown=interval)


def space_merges(context: WorkerContext, request_id: str, took: float) -> None:
    """Hold the next merge back in proportion to what this one cost.

    Every merge rewrites the request document, whose size grows with the request; waiting
    25 times as long as the last merge took keeps merging under about 4 % of the
    database's time for a request of any size.
    """
    hold = max(context.settings.work.merge_interval_seconds, MERGE_COST_FACTOR * took)
    with contextlib.suppress(redis.RedisError):  # then the next merge simply comes sooner
        context.redis.set(merge_key(request_id), 1, px=int(hold * 1000))


@app.task(name=MERGE_RESULTS, ignore_result=True)
def merge_results(request_id: str) -> None:
    """Fold finished products into the request document, and finish the request once all are in.

    Also the chord's callback, so the last results are merged and the request finalised at once.
    """
    context = worker_context()
    started = time.monotonic()
    claims = product_claims.unmerged(context.claims, request_id)
    merged = request_store.merge_results(context.requests, request_id, claims)
    product_claims.mark_merged(context.claims, [claim["_id"] for claim in claims])
    if merged:
        log.info("request %s: %d products merged", request_id, len(merged))
        space_merges(context, request_id, time.monotonic() - started)
    document = request_store.finalize_request(context.requests, request_id)
    if document is None:
        return
    log.info("request %s: %s", request_id, document["status"])
    request_events.announce_finished(context.redis, request_id)
    metrics.REQUESTS_FINISHED.labels(status=document["status"]).inc()
    if document.get("webhook"):
        enqueue_webhook(app, request_id)


@app.task(name=DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(request_id: str) -> None:
    context = worker_context()
    settings = context.settings
    document = webhook_state.claim_webhook(context.requests, request_id, settings.deadlines.webhook_claim_seconds)
    if document is None:
        return
    webhook = document["webhook"]
    body = webhooks.encode(webhooks.payload(document, context.storage, context.settings.download_url(request_id)))
    result = webhooks.send(webhook["url"], webhook["message_id"], body, settings.webhooks, settings.network)
    attempts = webhook["attempts"] + 1
    state, delay = webhook_state.after_attempt(result.delivered, attempts, settings.webhooks)
    metrics.WEBHOOK_ATTEMPTS.labels(outcome=ATTEMPT_OUTCOMES[state]).inc()
    recorded = webhook_state.record_webhook_attempt(
        context.requests,
        request_id,
        webhook["message_id"],
        attempts=attempts,
        state=state,
        status_code=result.status_code,
        error=result.error,
        next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None,
    )
    log.info("webhook of %s: attempt %d %s (%s)", request_id, attempts, state.value, result.status_code or result.error)
    if recorded and delay is not None:
        enqueue_webhook(app, request_id, countdown=delay)


@app.task(name=SWEEP, expires=60, ignore_result=True)
def sweep() -> None:
    plan = plan_sweep(worker_context())
    for request_id in plan.start_requests:
        enqueue_request(app, request_id)
    for work in plan.products:
        product_task(work).apply_async()
    for request_id in plan.merges:
        merge_results.delay(request_id)
    for request_id in plan.webhooks:
        enqueue_webhook(app, request_id)
