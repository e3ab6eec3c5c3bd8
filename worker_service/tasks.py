"""The Celery tasks: thin wrappers that claim work in MongoDB, do it, and record it."""

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import redis
from celery import Signature, chord
from celery.signals import after_task_publish

from shared import metrics
from shared.fair_queue import waiting_list, waiting_queue
from shared.models import WebhookState, utcnow
from shared.queue import (
    CANCEL_REQUEST,
    DELETE_REQUEST,
    DELIVER_WEBHOOK,
    FINISH_CANCEL,
    MERGE_IF_LAST,
    MERGE_RESULTS,
    PROCESS_PRODUCT,
    PROCESS_REQUEST,
    REVALIDATE_PRODUCTS,
    SWEEP,
    enqueue_cancel,
    enqueue_delete,
    enqueue_request,
    enqueue_webhook,
)
from shared.store import product_claims, requests
from shared.store.product_claims import ProductWork
from worker_service import context as worker_contexts
from worker_service import (
    merge_schedule,
    product_processing,
    request_life,
    revalidation,
    step_cpu,
    webhooks,
    worker_metrics,
)
from worker_service.celery_app import app
from worker_service.context import WorkerContext, worker_context
from worker_service.step_cpu import CLOCK
from worker_service.sweeper import forget_unused_sources, plan_sweep

log = logging.getLogger("worker.tasks")
# Here rather than with the app: only workers import the tasks (beat and Flower do not).
worker_metrics.install()
worker_contexts.install()
step_cpu.install()
# A delivery attempt's outcome, by the state it leaves the webhook in.
ATTEMPT_OUTCOMES = {WebhookState.DELIVERED: "delivered", WebhookState.PENDING: "retry", WebhookState.FAILED: "given_up"}


def product_task(work: ProductWork) -> Signature[None]:
    """The product's task, sent to wait in its request's own list until it is released in turn."""
    return process_product.si(asdict(work)).set(queue=waiting_queue(work.request_id))


def batch_task(works: list[ProductWork]) -> Signature[None]:
    """A batch of re-imported products' task, waiting for its turn as a product's does."""
    return revalidate_products.si([asdict(work) for work in works]).set(queue=waiting_queue(works[0].request_id))


def fan_out(
    context: WorkerContext, header: list[Signature[None]], works: list[ProductWork], then: Signature[None]
) -> None:
    """Send the tasks of these products; the last to end sends `then`, which merges their results."""
    with turns_once_some_wait(context, works):
        chord(header)(then)
    take_turns(context, works)


@contextmanager
def turns_once_some_wait(context: WorkerContext, works: list[ProductWork]) -> Iterator[None]:
    """Give the products' requests their turns as soon as PRODUCTS_QUEUED_AHEAD of their tasks wait,
    not only once the last is sent: Celery sends a chord's tasks one at a time, about 0.8 ms each, so
    a catalogue of 10,000 products waited 8 s for its first (docs/performance.md). Should the
    workers empty a request's list before the rest of it is sent, the request leaves the turns
    until `take_turns` after the last gives them back."""
    lists = {waiting_list(work.request_id) for work in works}
    sending_thread = threading.get_ident()
    sent = 0

    def count(routing_key: str | None = None, **_: Any) -> None:
        nonlocal sent
        if threading.get_ident() != sending_thread or routing_key not in lists:
            return  # another task's message, sent by another thread of this worker
        sent += 1
        if sent == context.fair_queue.ahead:
            take_turns(context, works)

    after_task_publish.connect(count, weak=False)
    try:
        yield
    finally:
        after_task_publish.disconnect(count)


def take_turns(context: WorkerContext, works: list[ProductWork]) -> None:
    """Give the requests of these (sent) products their turns, and release what is due."""
    for owner, request_id in {(work.owner, work.request_id) for work in works}:
        context.fair_queue.register(owner, request_id)
    release_in_turn(context)


def release_in_turn(context: WorkerContext) -> None:
    """Top the workers' queue up from the products waiting, in turn; Redis away, the sweeper will."""
    try:
        context.fair_queue.release()
    except redis.RedisError:
        log.warning("could not release waiting products now; the sweeper will", exc_info=True)


# No task's result is stored: nobody reads them, and a chord counts its header's tasks with the Redis
# backend's own counter, which each task adds to as it ends whether or not its result is stored.
@app.task(name=PROCESS_REQUEST, ignore_result=True)
def process_request(request_id: str) -> None:
    """Mark the request processing and fan out one task per product, each waiting for its turn
    (shared/fair_queue.py); the chord's callback finishes the request."""
    context = worker_context()
    works = context.store.run(requests.start(request_id, utcnow()))
    if works is None:
        return
    # Started, so not cancelled: a retry of a cancelled request starts its products again.
    request_life.allow_starting(context, request_id)
    batches, rest = revalidation.batches_and_rest(context, works)
    header = [batch_task(batch) for batch in batches] + [product_task(work) for work in rest]
    fan_out(context, header, works, merge_results.si(request_id))
    new = " (a new catalogue: none looked up)" if any(work.new_catalogue for work in rest) else ""
    log.info("request %s: %d products waiting for their turn (%d in %d batches of remembered images)%s", request_id,
             len(works), len(works) - len(rest), len(batches), new)  # fmt: skip


# No Celery time limits: every worker runs threads, which Celery cannot interrupt. Each wait of
# a product has a deadline of its own, and its codec work a process that is killed at its limit
# (worker_service/product_processing.py, codec_pool.py).
@app.task(name=PROCESS_PRODUCT, ignore_result=True)
def process_product(work: dict[str, Any]) -> None:
    context = worker_context()
    # This task left the workers' queue: the next in turn takes its place, and another as it ends.
    release_in_turn(context)
    try:
        run_product(context, ProductWork(**work))
    finally:
        release_in_turn(context)


@app.task(name=REVALIDATE_PRODUCTS, ignore_result=True)
def revalidate_products(works: list[dict[str, Any]]) -> None:
    """Re-imported products checked with their hosts together (worker_service/revalidation.py);
    those not found unchanged are sent on as product tasks."""
    context = worker_context()
    release_in_turn(context)
    try:
        batch = [ProductWork(**work) for work in works]
        revalidated = revalidation.revalidate(context, batch)
        if revalidated.recorded:
            merge_soon(context, batch[0].request_id)
        if revalidated.rest:
            rest = revalidated.rest
            fan_out(context, [product_task(work) for work in rest], rest, merge_if_last.si(batch[0].request_id))
    finally:
        release_in_turn(context)


def merge_soon(context: WorkerContext, request_id: str) -> None:
    """Results were recorded: have them merged within the merge interval."""
    interval = context.settings.work.merge_interval_seconds
    merge_schedule.ask_for_merge(
        context.redis,
        request_id,
        interval,
        lambda countdown: merge_results.apply_async((request_id,), countdown=countdown),
    )


def run_product(context: WorkerContext, product: ProductWork) -> None:
    limits = context.settings.work
    if request_life.is_cancelled(context, product.request_id):
        return
    claimed = context.store.run(product_claims.claim(product, utcnow(), limits.product_lease_seconds))
    if claimed is None:
        return
    if claimed.attempt > limits.product_max_attempts:
        log.error(
            "request %s: giving up product %s after %d attempts",
            product.request_id,
            product.serial_number,
            limits.product_max_attempts,
        )
        outcomes = product_processing.given_up(product, limits.product_max_attempts, claimed)
    else:
        outcomes = product_processing.process_product(context, product, claimed)
    result = product_processing.product_result(outcomes)
    image_log = [outcome.details for outcome in outcomes]
    learned = [outcome.source for outcome in outcomes if outcome.source]
    if context.store.run(product_claims.record(product, claimed.attempt, result, image_log, learned, utcnow())):
        with CLOCK.timing("metrics"):
            product_processing.add_to_metrics(outcomes)
        merge_soon(context, product.request_id)
    elif context.store.run(requests.deleted(product.request_id)):
        # Cancelled, then deleted while its images were still under way: what they stored after
        # the deletion began is nobody's, and must not come back under the request's /media URLs.
        context.storage.delete([key for key in result["output_keys"] if key])


@app.task(name=MERGE_RESULTS, ignore_result=True)
def merge_results(request_id: str) -> None:
    """Fold finished products into the request document, and finish the request once all are in.

    Also the chord's callback, so the last results are merged and the request finalised at once.
    """
    context = worker_context()
    started = time.monotonic()
    folded = request_life.fold_in(context, request_id)
    finished = context.store.run(requests.finalize(request_id, utcnow()))
    if finished is not None:
        request_life.announce(context, request_id, finished, deliver_in_turn)
    # After the request is final: its last results' settling is no client's wait.
    request_life.settle(context, folded)
    if folded.merged:
        log.info("request %s: %d products merged", request_id, folded.merged)
        interval = context.settings.work.merge_interval_seconds
        merge_schedule.hold_next_merge(context.redis, request_id, interval, time.monotonic() - started)


@app.task(name=MERGE_IF_LAST, ignore_result=True)
def merge_if_last(request_id: str) -> None:
    """What ends the products a batch handed on: at once if they may be the request's last, so it
    finishes; otherwise in the merges' turn, as results a product records, since every batch with a
    product handed on has a chord of its own (a merge each would rewrite the document as often)."""
    context = worker_context()
    if request_life.may_finish(context, request_id):
        merge_results(request_id)
    else:
        merge_soon(context, request_id)


def deliver_in_turn(request_id: str) -> None:
    enqueue_webhook(app, request_id)


@app.task(name=CANCEL_REQUEST, ignore_result=True)
def cancel_request(request_id: str, owner: str | None, grace_seconds: float | None = None) -> None:
    """Its products not started never start; it is final once those under way finish, or soon
    (at once for a cancel the sweeper takes up: its grace is over)."""
    dropped = request_life.stop_starting(worker_context(), request_id, owner)
    log.info("request %s: cancelled, %d products never started", request_id, dropped)
    grace = request_life.CANCEL_GRACE_SECONDS if grace_seconds is None else grace_seconds
    look = min(grace, request_life.CANCEL_LOOK_SECONDS)
    finish_cancel.apply_async((request_id, time.time() + grace), countdown=look)


@app.task(name=FINISH_CANCEL, ignore_result=True)
def finish_cancel(request_id: str, give_up_at: float) -> None:
    """Finish a cancelled request, or look again shortly while its images under way may still finish."""
    context = worker_context()
    # Wall-clock time in the message: another worker may take the next look.
    left = give_up_at - time.time()
    finished = request_life.finish_cancelled(context, request_id, time.monotonic() + left)
    if finished is not None:
        request_life.announce(context, request_id, finished, deliver_in_turn)
    elif left > 0:
        finish_cancel.apply_async((request_id, give_up_at), countdown=request_life.CANCEL_LOOK_SECONDS)


@app.task(name=DELETE_REQUEST, ignore_result=True)
def delete_request(request_id: str) -> None:
    request_life.delete(worker_context(), request_id)


@app.task(name=DELIVER_WEBHOOK, ignore_result=True)
def deliver_webhook(request_id: str) -> None:
    context = worker_context()
    settings = context.settings
    hold = settings.deadlines.webhook_claim_seconds
    delivery = context.store.run(requests.claim_webhook(request_id, utcnow(), hold))
    if delivery is None:
        return
    body = webhooks.encode(webhooks.payload(delivery.request, context.storage, settings.download_url(request_id)))
    result = webhooks.send(delivery.url, delivery.message_id, body, settings.webhooks, settings.network)
    attempts = delivery.attempts_made + 1
    state, delay = webhooks.after_attempt(result.delivered, attempts, settings.webhooks)
    metrics.WEBHOOK_ATTEMPTS.labels(outcome=ATTEMPT_OUTCOMES[state]).inc()
    recorded = context.store.run(
        requests.record_webhook_attempt(
            request_id,
            delivery.message_id,
            attempts=attempts,
            state=state,
            status_code=result.status_code,
            error=result.error,
            next_attempt_at=utcnow() + timedelta(seconds=delay) if delay is not None else None,
        )
    )
    log.info("webhook of %s: attempt %d %s (%s)", request_id, attempts, state.value, result.status_code or result.error)
    if recorded and delay is not None:
        enqueue_webhook(app, request_id, countdown=delay)


@app.task(name=SWEEP, expires=60, ignore_result=True)
def sweep() -> None:
    context = worker_context()
    forget_unused_sources(context, utcnow())
    for request_id in request_life.past_retention(context):
        enqueue_delete(app, request_id)
    plan = plan_sweep(context)
    for request_id in plan.start_requests:
        enqueue_request(app, request_id)
    for work in plan.products:
        product_task(work).apply_async()
    take_turns(context, plan.products)
    for request_id in plan.merges:
        merge_results.delay(request_id)
    for request_id in plan.webhooks:
        enqueue_webhook(app, request_id)
    for lost_cancel in plan.cancels:
        enqueue_cancel(app, lost_cancel.request_id, lost_cancel.owner, grace_seconds=0)
    for request_id in plan.deletions:
        enqueue_delete(app, request_id)
