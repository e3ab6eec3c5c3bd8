"""The periodic sweep that recovers lost work from MongoDB, not from hope.

It finds what a lost message, a killed worker or a restarted server left behind:
requests accepted but never started, products whose worker's lease expired, requests
whose products are all done but whose chord callback never came, stalled requests,
and webhook deliveries that are due but were never run.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.documents import utcnow
from shared.models import ProductStatus
from worker_service import repository
from worker_service.context import WorkerContext

log = logging.getLogger("worker.sweeper")


@dataclass
class SweepPlan:
    """What to enqueue; the tasks module does the enqueueing."""

    start_requests: list[str] = field(default_factory=list)
    products: list[tuple[str, int]] = field(default_factory=list)
    finalize: list[str] = field(default_factory=list)
    webhooks: list[str] = field(default_factory=list)


def expired_products(request: dict[str, Any], now: datetime) -> list[int]:
    return [i for i, p in enumerate(request.get("products", []))
            if p.get("status") == ProductStatus.PROCESSING.value
            and p.get("lease_expires_at") is not None and p["lease_expires_at"] < now]


def pending_products(request: dict[str, Any]) -> list[int]:
    return [i for i, p in enumerate(request.get("products", [])) if p.get("status") == ProductStatus.PENDING.value]


def plan_for_processing(context: WorkerContext, plan: SweepPlan, request: dict[str, Any], now: datetime) -> None:
    request_id = request["_id"]
    settings = context.settings
    if request["products_done"] >= request["products_total"]:
        if request["updated_at"] < now - timedelta(seconds=settings.sweep_interval_seconds):
            plan.finalize.append(request_id)
        return
    released = [i for i in expired_products(request, now)
                if repository.release_expired_lease(context.requests, request_id, i, now)]
    if released:
        log.warning("request %s: re-enqueueing products %s whose worker was lost", request_id, released)
        plan.products += [(request_id, i) for i in released]
    elif request["updated_at"] < now - timedelta(seconds=settings.stall_seconds):
        # Nothing finished for a while: the queued messages may be lost. Enqueue the
        # pending products again; a copy that finds its product done does nothing.
        log.warning("request %s: stalled, re-enqueueing its pending products", request_id)
        plan.products += [(request_id, i) for i in pending_products(request)]
        repository.touch(context.requests, request_id)


def plan_sweep(context: WorkerContext) -> SweepPlan:
    now = utcnow()
    settings = context.settings
    plan = SweepPlan()
    stalled_before = now - timedelta(seconds=settings.stall_seconds)
    for request_id in repository.stalled_pending_requests(context.requests, stalled_before):
        repository.touch(context.requests, request_id)
        plan.start_requests.append(request_id)
    for request in repository.processing_requests(context.requests):
        plan_for_processing(context, plan, request, now)
    grace = now - timedelta(seconds=settings.sweep_interval_seconds)
    plan.webhooks = repository.due_webhooks(context.requests, grace)
    return plan
