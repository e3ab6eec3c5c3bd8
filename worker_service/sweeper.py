"""The periodic sweep that recovers lost work from MongoDB, not from hope.

It finds what a lost message, a killed worker or a restarted server left behind:
requests accepted but never started, products whose worker's lease expired, finished
products never merged into their request, requests whose products are all in but which
were never finalised, stalled requests, and webhook deliveries that are due but not running.
"""

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared import webhook_state
from shared.models import utcnow
from worker_service import product_claims, request_store
from worker_service.context import WorkerContext
from worker_service.product_claims import ProductWork

log = logging.getLogger("worker.sweeper")


@dataclass
class SweepPlan:
    """What to enqueue; the tasks module does the enqueueing."""

    start_requests: list[str] = field(default_factory=list)
    products: list[ProductWork] = field(default_factory=list)
    merges: set[str] = field(default_factory=set)
    webhooks: list[str] = field(default_factory=list)


def lost_products(context: WorkerContext, now: datetime) -> list[ProductWork]:
    by_request: dict[str, list[int]] = defaultdict(list)
    for request_id, index in product_claims.release_expired(context.claims, now):
        by_request[request_id].append(index)
    works = []
    for request_id, indexes in by_request.items():
        log.warning("request %s: re-enqueueing products %s whose worker was lost", request_id, indexes)
        works += request_store.pending_work(context.requests, request_id, indexes)
    return works


def stalled_products(context: WorkerContext, request: dict[str, Any]) -> list[ProductWork]:
    """A request with no progress for a while may have lost its queued messages: enqueue its
    pending products again (a copy that finds its product done or held does nothing)."""
    request_id = request["_id"]
    settled = product_claims.settled(context.claims, request_id)
    works = [w for w in request_store.pending_work(context.requests, request_id) if w.index not in settled]
    request_store.touch(context.requests, request_id)
    if works:
        log.warning("request %s: stalled, re-enqueueing %d pending products", request_id, len(works))
    return works


def plan_sweep(context: WorkerContext) -> SweepPlan:
    now = utcnow()
    settings = context.settings
    plan = SweepPlan()
    stalled_before = now - timedelta(seconds=settings.stall_seconds)
    for request_id in request_store.stalled_pending_requests(context.requests, stalled_before):
        request_store.touch(context.requests, request_id)
        plan.start_requests.append(request_id)
    plan.products = lost_products(context, now)
    # A merge is scheduled within the merge interval of a result; older ones were lost.
    merge_due = now - timedelta(seconds=settings.merge_interval_seconds + settings.sweep_interval_seconds)
    plan.merges.update(product_claims.requests_with_stale_results(context.claims, merge_due))
    for request in request_store.processing_requests(context.requests):
        if request["products_done"] >= request["products_total"]:
            plan.merges.add(request["_id"])
        elif request["updated_at"] < stalled_before:
            plan.products += stalled_products(context, request)
    plan.webhooks = webhook_state.due_webhooks(
        context.requests, now - timedelta(seconds=settings.sweep_interval_seconds)
    )
    return plan
