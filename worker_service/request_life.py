"""What the control worker does to a whole request: fold its finished products in, finish it, and
end it at its caller's wish (cancel, delete) or the retention's. The tasks call these; the store
modules hold every query."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import redis

from shared import metrics, request_events
from shared.models import utcnow
from shared.storage import MissingObject, StorageUnavailable
from shared.store import product_claims, requests, sources
from shared.store.product_claims import FinishedClaim
from shared.store.requests import Finished
from shared.store.sources import SourceDocument
from worker_service.context import WorkerContext

log = logging.getLogger("worker.requests")

# A cancelled request's images under way may finish for this long; then it is final, whatever runs.
CANCEL_GRACE_SECONDS = 5.0
# How often a cancelled request looks for its images under way to have finished.
CANCEL_LOOK_SECONDS = 1.0
# The Redis key a product task looks at before it starts: the request was cancelled.
CANCELLED_PREFIX = "cancelled:"
CANCELLED_SAID_SECONDS = 24 * 3600
# Deletions sent at most per sweep (by the retention, and again for unfinished ones): a backlog
# (a retention set on a full database) is worked off sweep by sweep, not all in the control queue.
DELETIONS_PER_SWEEP = 200


@dataclass(frozen=True)
class Folded:
    """The finished claims a merge read, each now in the request document, and how many it merged."""

    claims: list[FinishedClaim]
    merged: int


def fold_in(context: WorkerContext, request_id: str) -> Folded:
    """Merge the request's finished products into its document; `settle` the claims next."""
    claims = context.store.run(product_claims.unmerged(request_id))
    merged = context.store.run(requests.merge(request_id, claims, utcnow()))
    return Folded(claims, len(merged))


def may_finish(context: WorkerContext, request_id: str) -> bool:
    """Whether every product of the request may have a result, in its document or a claim not yet
    merged. The claims are counted first: one is marked merged only after the document holds its
    result, so none is missed in between (one counted twice only brings a merge too many)."""
    unmerged = context.store.run(product_claims.count_unmerged(request_id))
    return unmerged >= context.store.run(requests.products_left(request_id))


def settle(context: WorkerContext, folded: Folded) -> None:
    """What a merge leaves to do, which no client waits for: remember what the claims teach of their
    sources, then mark them merged (0.6 ms of the embedded server's time each). Lost in between, the
    next merge reads the claims again, folds in none of them, and settles them."""
    context.store.run(sources.remember(product_claims.sources_of(folded.claims)))
    context.store.run(product_claims.mark_merged(folded.claims))


def fold_in_and_settle(context: WorkerContext, request_id: str) -> None:
    settle(context, fold_in(context, request_id))


def announce(context: WorkerContext, request_id: str, finished: Finished, deliver: Callable[[str], None]) -> None:
    """A request that just became final: told to the API processes, counted, its webhook sent."""
    log.info("request %s: %s", request_id, finished.status.value)
    request_events.announce_finished(context.redis, request_id)
    metrics.REQUESTS_FINISHED.labels(status=finished.status.value).inc()
    if finished.has_webhook:
        deliver(request_id)


def cancelled_key(request_id: str) -> str:
    return f"{CANCELLED_PREFIX}{request_id}"


def stop_starting(context: WorkerContext, request_id: str, owner: str | None) -> int:
    """A cancelled request's products not started never start: those waiting for their turn are
    dropped, and those already released see the mark before they claim. How many were dropped."""
    context.redis.set(cancelled_key(request_id), 1, ex=CANCELLED_SAID_SECONDS)
    return context.fair_queue.withdraw(owner, request_id)


def allow_starting(context: WorkerContext, request_id: str) -> None:
    context.redis.delete(cancelled_key(request_id))


def is_cancelled(context: WorkerContext, request_id: str) -> bool:
    """Whether the request's products are not to start. With Redis away they start: its cancel
    still ends the request in time, and what they record then is not merged."""
    try:
        return bool(context.redis.exists(cancelled_key(request_id)))
    except redis.RedisError:
        return False


def finish_cancelled(context: WorkerContext, request_id: str, give_up_at: float) -> Finished | None:
    """Finish a cancelled request once its images under way have finished, or at `give_up_at`
    (monotonic) at the latest: None while it waits for them (the caller looks again)."""
    fold_in_and_settle(context, request_id)
    if context.store.run(product_claims.held(request_id, utcnow())) and time.monotonic() < give_up_at:
        return None
    # What still runs records nothing; what recorded meanwhile is folded in first.
    context.store.run(product_claims.close_unfinished(request_id))
    fold_in_and_settle(context, request_id)
    return context.store.run(requests.finish_cancelled(request_id, utcnow()))


def delete(context: WorkerContext, request_id: str) -> None:
    """A deleted request's images, claims (its processing log) and document, in that order, each
    step safe to run again. Outputs the re-import memory still points at are handed over to it
    first, so that a later upload of the same sources reuses them rather than find them gone.
    Storage that refuses is not waited for (a control thread is worth more): the sweeper sends
    the deletion again a sweep later."""
    try:
        for source in context.store.run(sources.held_by(request_id)):
            hand_over(context, source)
        context.storage.delete_request(request_id)
    except StorageUnavailable as refused:
        metrics.STORAGE_REFUSALS.inc()
        log.warning("request %s: not deleted yet, storage refused (%s); the sweeper will try again", request_id,
                    refused.detail)  # fmt: skip
        return
    context.store.run(product_claims.delete_of(request_id))
    context.store.run(requests.delete(request_id))
    context.redis.delete(cancelled_key(request_id))
    log.info("request %s: deleted", request_id)


def hand_over(context: WorkerContext, source: SourceDocument) -> None:
    """Copy an output the memory points at to the memory's own key, and point the memory there;
    an output already gone is forgotten instead."""
    try:
        context.storage.copy(source["output"]["key"], sources.adopted_key(source))
    except MissingObject:
        context.store.run(sources.forget_gone(source))
        return
    context.store.run(sources.adopt(source))


def past_retention(context: WorkerContext) -> list[str]:
    """Final requests older than RETENTION_DAYS, the oldest first, marked deleted (they answer 404
    from now on), whose deletion is to be sent now."""
    days = context.settings.work.retention_days
    if days is None:
        return []
    now = utcnow()
    expired = context.store.run(requests.past_retention(now - timedelta(days=days), now, DELETIONS_PER_SWEEP))
    if expired:
        log.info("%d requests past RETENTION_DAYS=%g are deleted", len(expired), days)
    return expired
