"""Re-imported products checked with their hosts in batches, not one task each.

A shop uploads its catalogue every night, and most of it has not changed: its host answers `304`
or the same bytes, and each output is copied (worker_service/image_work.py). Done a task per
product, that costs more in Celery's messages, the fair queue's turns and the database's round
trips (claim, lookup, result) than in the images: about 20 ms of the machine's CPU a product
against 3 ms of image work. So a request of at least REUSE_BATCH_IMAGES images that a sample of
its products' first images shows remembered (shared/store/sources.py) is checked in batches of up
to that many images, and a batch costs one memory lookup, its conditional requests (asked by its
one thread through libcurl's multi interface, DOWNLOAD_CONCURRENCY at a time), its copies, and one
write of every product it found unchanged.
With the whole sample remembered, every product goes in a batch; with part of it, only those whose
every image the memory holds; with none of it, and none of the sampled products' other images
either, the request is a new catalogue, whose product tasks look nothing up (`as_new_catalogue`).

A batch only ever records products whose every image it reused. Any other (an image not
remembered, changed, redirected, failed, not answered within DOWNLOAD_TOTAL_TIMEOUT_SECONDS, or
its output gone) is handed on as a product task of its own and processed as any product, with its failures
and retries; the last of those a batch hands on merges the request's results at once only if the
request may then be finished (`tasks.merge_if_last`). A batch claims nothing: one that is lost
leaves its products pending, which the sweeper enqueues as product tasks; one run twice records
each product once (`product_claims.record_unclaimed`).
"""

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from shared.models import utcnow
from shared.store import product_claims, requests, sources
from shared.store.product_claims import ProductWork
from worker_service import image_work, product_processing, request_life
from worker_service.context import WorkerContext
from worker_service.image_lanes import run_in_lanes
from worker_service.image_work import ImageJob, ImageOutcome
from worker_service.step_cpu import CLOCK

log = logging.getLogger("worker.revalidation")
# Products whose first image is looked up before a request's every image is.
SAMPLED_PRODUCTS = 100


def can_batch(context: WorkerContext, work: ProductWork) -> bool:
    """Whether the product may be checked in a batch at all: the memory on, no refresh, every image."""
    return context.settings.reuse.outputs and not work.refresh and work.positions is None


def batches_and_rest(
    context: WorkerContext, works: list[ProductWork]
) -> tuple[list[list[ProductWork]], list[ProductWork]]:
    """The products to check in batches, and the rest, each its own task."""
    candidates = [work for work in works if can_batch(context, work)]
    images = sum(len(work.input_image_urls) for work in candidates)
    # Fewer than a batch: not worth a lookup that every first upload would pay too (measured: 30
    # requests of 20 images uploaded at once took 9 % longer), and its products reuse what they can.
    if images < context.settings.reuse.batch_images:
        return [], works
    share = sampled_share(context, candidates)
    if share == 0:
        return [], as_new_catalogue(context, works, candidates)
    if share < 1:
        candidates = wholly_remembered(context, candidates)
    batched = {work.index for work in candidates}
    rest = [work for work in works if work.index not in batched]
    return list(in_batches(candidates, context.settings.reuse.batch_images)), rest


def sampled_share(context: WorkerContext, works: list[ProductWork]) -> float:
    """The share of a sample of the products' first images, spread over the request, that the
    memory holds. None: most likely a new catalogue (`as_new_catalogue` looks at the rest of the
    sampled products' images); it is not looked up whole (the embedded server takes about 0.1 ms
    an image; 5 s for 50,000). All: a catalogue uploaded again, sent in batches whole, since each
    batch reads what the memory holds of its own images anyway, and hands on any product it does
    not find whole; looking every image up first took a quarter of a 1,000-image re-import (0.24
    of 0.9-1.2 s)."""
    sample = [work.input_image_urls[0] for work in sampled_products(works)]
    known = context.store.run(sources.known(works[0].owner, sample, context.codec_fingerprint))
    return len(known) / len(set(sample))


def sampled_products(works: list[ProductWork]) -> list[ProductWork]:
    """Up to SAMPLED_PRODUCTS of the products, spread evenly over the request."""
    step = max(1, len(works) // SAMPLED_PRODUCTS)
    return works[::step][:SAMPLED_PRODUCTS]


def as_new_catalogue(
    context: WorkerContext, works: list[ProductWork], candidates: list[ProductWork]
) -> list[ProductWork]:
    """The products, marked a new catalogue (none then looks its images up) when the memory holds no
    image at all of the sampled products, their first images being new. Each product's lookup cost
    the embedded database 0.35-0.40 ms of CPU and the worker 0.25-0.32 ms (docs/performance.md),
    to find in such a catalogue at most the odd product outside the sample, which is then
    processed again. A catalogue with new main photos and its other photos kept is not new."""
    # Their first images were just found new (`sampled_share`): only the others are left to look up.
    others = [url for work in sampled_products(candidates) for url in work.input_image_urls[1:]]
    if others:
        known = context.store.run(sources.known(works[0].owner, others, context.codec_fingerprint))
        if known:
            return works
    new = {work.index for work in candidates}
    return [replace(work, new_catalogue=True) if work.index in new else work for work in works]


def wholly_remembered(context: WorkerContext, works: list[ProductWork]) -> list[ProductWork]:
    """The products whose every image the memory holds: a catalogue partly new is looked up whole,
    so that its new products start at once rather than after a batch handed them on."""
    urls = [url for work in works for url in work.input_image_urls]
    known = context.store.run(sources.known(works[0].owner, urls, context.codec_fingerprint))
    return [work for work in works if all(url in known for url in work.input_image_urls)]


def in_batches(works: list[ProductWork], most_images: int) -> Iterator[list[ProductWork]]:
    """The products in order, as few to a batch as keeps each to `most_images` images (a product
    with more has a batch of its own)."""
    batch: list[ProductWork] = []
    images = 0
    for work in works:
        size = len(work.input_image_urls)
        if batch and images + size > most_images:
            yield batch
            batch, images = [], 0
        batch.append(work)
        images += size
    if batch:
        yield batch


@dataclass(frozen=True)
class Revalidated:
    recorded: int  # products recorded as reused
    rest: list[ProductWork]  # products to process, each as a product task


def revalidate(context: WorkerContext, works: list[ProductWork]) -> Revalidated:
    """Check the batch's products with their hosts, and record those found unchanged."""
    request_id, owner = works[0].request_id, works[0].owner
    if request_life.is_cancelled(context, request_id):
        return Revalidated(0, [])
    urls = [url for work in works for url in work.input_image_urls]
    remembered = context.store.run(sources.remembered(owner, urls, context.codec_fingerprint))
    per_product = [product_processing.jobs_of(context, work, remembered) for work in works]
    limit = context.settings.download.total_timeout_seconds
    answered = iter(checked(context, [job for jobs in per_product for job in jobs], time.monotonic() + limit))
    per_product = [[next(answered) for _ in jobs] for jobs in per_product]
    # Only a product whose every image its host confirmed is copied: any other is handed on whole.
    whole = [all(image_work.confirmed_unchanged(job) for job in jobs) for jobs in per_product]
    copied = [job for jobs, reusable in zip(per_product, whole, strict=True) if reusable for job in jobs]
    # The copies have a limit of their own: one slow host must not leave them no time at all.
    copies_end = time.monotonic() + limit
    ended = iter(run_in_lanes(context, image_work.reused_or_none, copied, copies_end, copies_end))
    outcomes = [
        every_image([next(ended) for _ in jobs]) if reusable else None
        for jobs, reusable in zip(per_product, whole, strict=True)
    ]
    unchanged = [(work, images) for work, images in zip(works, outcomes, strict=True) if images is not None]
    # Cancelled meanwhile: nothing is recorded, and nothing more started.
    if request_life.is_cancelled(context, request_id):
        return Revalidated(0, [])
    recorded = record(context, request_id, unchanged)
    if recorded is None:
        return Revalidated(0, [])
    rest = [work for work in works if work.index not in recorded]
    log.info("request %s: %d of a batch of %d products reused, %d to process", request_id, len(recorded), len(works),
             len(rest))  # fmt: skip
    return Revalidated(len(recorded), rest)


def checked(context: WorkerContext, jobs: list[ImageJob], not_after: float) -> list[ImageJob]:
    """The jobs, each with its host's answer to one conditional request, all asked together by the
    batch's thread (`Downloader.check_many`), DOWNLOAD_CONCURRENCY at a time, by `not_after`: a lane
    thread each waiting for its answers cost the worker more CPU than the checks did. An image
    whose check did not end cleanly (a redirect, an error, a limit) has none, and its product is
    handed on, to be asked again and processed as any product."""
    asked = [(job.url, image_work.validators_of(job.remembered)) for job in jobs]
    with CLOCK.timing("download"):
        checks = context.downloader.check_many(asked, context.settings.download.concurrency, not_after)
    unconfirmed = checks.count(None)
    if unconfirmed:
        log.info("%d of a batch's %d images not confirmed by their hosts", unconfirmed, len(jobs))
    return [replace(job, checked=check) for job, check in zip(jobs, checks, strict=True)]


def every_image(outcomes: list[ImageOutcome | None]) -> list[ImageOutcome] | None:
    """The product's outcomes if every image was reused; None if it is to be processed."""
    reused = [outcome for outcome in outcomes if outcome is not None]
    return reused if len(reused) == len(outcomes) else None


def record(
    context: WorkerContext, request_id: str, unchanged: list[tuple[ProductWork, list[ImageOutcome]]]
) -> set[int] | None:
    """Keep the results of the products found unchanged, in one write; the indexes kept, or None if
    the request was deleted meanwhile."""
    now = utcnow()
    claims = [
        product_claims.recorded_at_once(
            work,
            product_processing.product_result(images),
            [image.details for image in images],
            [image.source for image in images if image.source],
            now,
        )
        for work, images in unchanged
    ]
    kept = context.store.run(product_claims.record_unclaimed(claims))
    deleted = bool(kept) and context.store.run(requests.deleted(request_id))
    if deleted:
        # Deleted while the batch ran: what it stored and recorded after the deletion began is
        # nobody's, and must not come back under the request's /media URLs (as tasks.run_product).
        context.storage.delete([image.key for work, images in unchanged for image in images if image.key])
        context.store.run(product_claims.delete_of(request_id))
        return None
    with CLOCK.timing("metrics"):
        for work, images in unchanged:
            if work.index in kept:
                product_processing.add_to_metrics(images)
    return kept
