"""The periodic sweep that recovers lost work from MongoDB, not from hope.

It finds what a lost message, a killed worker or a restarted server left behind:
requests accepted but never started, products whose worker's lease expired, finished
products never merged into their request, requests whose products are all in but which
were never finalised, stalled requests, and webhook deliveries that are due but not running.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from shared import webhook_state
from shared.models import utcnow
from shared.settings import WorkSettings
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


@dataclass(frozen=True)
class Cutoffs:
    """The moments before which the sweeper takes something for lost."""

    now: datetime
    # A request with no progress since then may have lost its queued messages.
    stalled_before: datetime
    # A merge is scheduled within the merge interval of a result; results older than this were not merged.
    merge_due_before: datetime
    # A due delivery that nobody has taken up within a sweep.
    webhook_due_before: datetime

    @classmethod
    def at(cls, now: datetime, settings: WorkSettings) -> Cutoffs:
        sweep = timedelta(seconds=settings.sweep_interval_seconds)
        return cls(
            now=now,
            stalled_before=now - timedelta(seconds=settings.stall_seconds),
            merge_due_before=now - timedelta(seconds=settings.merge_interval_seconds) - sweep,
            webhook_due_before=now - sweep,
        )


def processing_request_needs(request: dict[str, Any], cutoffs: Cutoffs) -> Literal["finalise", "restart"] | None:
    """What an unfinished request needs from the sweeper: its last merge (every product is in),
    its pending products enqueued again (no progress for a while), or nothing."""
    if request["products_done"] >= request["products_total"]:
        return "finalise"
    if request["updated_at"] < cutoffs.stalled_before:
        return "restart"
    return None


def plan_sweep(context: WorkerContext) -> SweepPlan:
    cutoffs = Cutoffs.at(utcnow(), context.settings.work)
    plan = SweepPlan()
    for request_id in request_store.stalled_pending_requests(context.requests, cutoffs.stalled_before):
        request_store.touch(context.requests, request_id)
        plan.start_requests.append(request_id)
    plan.products = lost_products(context, cutoffs.now)
    plan.merges.update(product_claims.requests_with_stale_results(context.claims, cutoffs.merge_due_before))
    for request in request_store.processing_requests(context.requests):
        match processing_request_needs(request, cutoffs):
            case "finalise":
                plan.merges.add(request["_id"])
            case "restart":
                plan.products += stalled_products(context, request)
    plan.webhooks = webhook_state.due_webhooks(context.requests, cutoffs.webhook_due_before)
    return plan
