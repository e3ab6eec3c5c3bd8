"""The periodic sweep that recovers lost work from MongoDB, not from hope.

It finds what a lost message, a killed worker or a restarted server left behind:
requests accepted but never started, products whose worker's lease expired, finished
products never merged into their request, requests whose products are all in but which
were never finalised, stalled requests, and webhook deliveries that are due but not running.
And it forgets what the re-import memory has not used for REUSE_MEMORY_DAYS.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from shared.models import utcnow
from shared.settings import WorkSettings
from shared.store import product_claims, requests, sources
from shared.store.product_claims import ProductWork
from shared.store.requests import CancelledRequest, UnfinishedRequest
from worker_service.context import WorkerContext
from worker_service.request_life import CANCEL_GRACE_SECONDS, CANCEL_LOOK_SECONDS, DELETIONS_PER_SWEEP

# How long a cancel's own tasks may take to finish it: the sweeper finishes it only after that, not
# cutting short the images under way that the cancel lets finish.
CANCEL_TAKES = timedelta(seconds=CANCEL_GRACE_SECONDS + CANCEL_LOOK_SECONDS)
log = logging.getLogger("worker.sweeper")


@dataclass
class SweepPlan:
    """What to enqueue; the tasks module does the enqueueing."""

    start_requests: list[str] = field(default_factory=list)
    products: list[ProductWork] = field(default_factory=list)
    merges: set[str] = field(default_factory=set)
    webhooks: list[str] = field(default_factory=list)
    # Cancelled requests to finish now, and deleted requests whose documents are still there.
    cancels: list[CancelledRequest] = field(default_factory=list)
    deletions: list[str] = field(default_factory=list)


def lost_products(context: WorkerContext, now: datetime) -> list[ProductWork]:
    by_request: dict[str, list[int]] = defaultdict(list)
    for request_id, index in context.store.run(product_claims.release_expired(now)):
        by_request[request_id].append(index)
    works = []
    for request_id, indexes in by_request.items():
        log.warning("request %s: re-enqueueing products %s whose worker was lost", request_id, indexes)
        works += context.store.run(requests.pending_work(request_id, indexes))
    return works


def stalled_products(context: WorkerContext, request_id: str) -> list[ProductWork]:
    """A request with no progress for a while may have lost its queued messages: enqueue its
    pending products again (a copy that finds its product done or held does nothing)."""
    now = utcnow()
    pending = context.store.run(requests.pending_work(request_id))
    # A retry marks its products pending, then reopens their claims: lost in between, a product's
    # claim would still be done and merged, and no worker could claim it again.
    context.store.run(product_claims.reopen_claims(request_id, [work.index for work in pending]))
    settled = context.store.run(product_claims.settled(request_id, now))
    works = [work for work in pending if work.index not in settled]
    context.store.run(requests.touch(request_id, now))
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
    # A cancel its tasks have not finished within their grace for the images under way and a
    # sweep; a deletion not finished within a sweep.
    cancel_due_before: datetime
    deletion_due_before: datetime

    @classmethod
    def at(cls, now: datetime, settings: WorkSettings) -> Cutoffs:
        sweep = timedelta(seconds=settings.sweep_interval_seconds)
        return cls(
            now=now,
            stalled_before=now - timedelta(seconds=settings.stall_seconds),
            merge_due_before=now - timedelta(seconds=settings.merge_interval_seconds) - sweep,
            webhook_due_before=now - sweep,
            cancel_due_before=now - sweep - CANCEL_TAKES,
            deletion_due_before=now - sweep,
        )


def processing_request_needs(request: UnfinishedRequest, cutoffs: Cutoffs) -> Literal["finalise", "restart"] | None:
    """What an unfinished request needs from the sweeper: its last merge (every product is in),
    its pending products enqueued again (no progress for a while), or nothing."""
    if request.all_products_in:
        return "finalise"
    if request.last_progress_at < cutoffs.stalled_before:
        return "restart"
    return None


def forget_unused_sources(context: WorkerContext, now: datetime) -> int:
    """What the re-import memory has not used for REUSE_MEMORY_DAYS, and the outputs it adopted for them."""
    expired = context.store.run(sources.expired(now))
    if not expired:
        return 0
    adopted = [source["output"]["key"] for source in expired if sources.is_adopted(source["output"])]
    forgotten = context.store.run(sources.forget(expired, now))
    context.storage.delete(adopted)
    log.info("forgot %d sources unused for %g days", forgotten, context.settings.reuse.memory_days)
    return forgotten


def plan_sweep(context: WorkerContext) -> SweepPlan:
    cutoffs = Cutoffs.at(utcnow(), context.settings.work)
    plan = SweepPlan()
    for request_id in context.store.run(requests.stalled_pending(cutoffs.stalled_before)):
        context.store.run(requests.touch(request_id, cutoffs.now))
        plan.start_requests.append(request_id)
    plan.products = lost_products(context, cutoffs.now)
    plan.merges.update(context.store.run(product_claims.requests_with_stale_results(cutoffs.merge_due_before)))
    for request in context.store.run(requests.processing()):
        match processing_request_needs(request, cutoffs):
            case "finalise":
                plan.merges.add(request.request_id)
            case "restart" if request.cancelling:
                pass  # its cancel ends it (plan.cancels)
            case "restart" if context.fair_queue.waiting(request.request_id):
                # Not stalled: its products wait for their turn behind others'. Their turns are
                # given again in case Redis lost them, and the wait counts as progress.
                context.fair_queue.register(request.owner, request.request_id)
                context.store.run(requests.touch(request.request_id, cutoffs.now))
            case "restart":
                plan.products += stalled_products(context, request.request_id)
    plan.webhooks = context.store.run(requests.due_webhooks(cutoffs.webhook_due_before, cutoffs.now))
    plan.cancels = context.store.run(requests.cancelling(cutoffs.cancel_due_before))
    plan.deletions = context.store.run(requests.being_deleted(cutoffs.deletion_due_before, DELETIONS_PER_SWEEP))
    return plan
