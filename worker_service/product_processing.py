"""One product: its images in the worker's threads, within its deadline, with its lease kept alive;
then what came of it."""

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from itertools import islice

from structlog.contextvars import bind_contextvars

from shared import metrics
from shared.errors import OutOfTime
from shared.models import ProductStatus, ReuseKind, utcnow
from shared.store import product_claims, requests, sources
from shared.store.product_claims import Claimed, ImageDetails, ProductResult, ProductWork
from shared.store.sources import SourceDocument
from worker_service import image_work
from worker_service.context import WorkerContext
from worker_service.image_work import ImageJob, ImageOutcome

log = logging.getLogger("worker.product")


def product_result(outcomes: list[ImageOutcome]) -> ProductResult:
    """What came of the product: completed unless none of its images was stored."""
    failed = sum(1 for outcome in outcomes if outcome.key is None)
    return {
        "status": (ProductStatus.FAILED if failed == len(outcomes) else ProductStatus.COMPLETED).value,
        "output_keys": [outcome.key for outcome in outcomes],
        "errors": [
            {"index": i, "message": requests.short(outcome.error or "failed")}
            for i, outcome in enumerate(outcomes)
            if outcome.key is None
        ],
        "images": len(outcomes),
        "images_failed": failed,
        "images_reused": sum(1 for outcome in outcomes if outcome.details.reuse),
        "bytes_in": sum(outcome.details.bytes_in or 0 for outcome in outcomes),
        "bytes_out": sum(outcome.details.bytes_out or 0 for outcome in outcomes),
    }


def failed(message: str) -> ImageOutcome:
    return ImageOutcome(error=message, details=ImageDetails(finished_at=utcnow()))


def outcome_or_timeout(future: Future[ImageOutcome] | None) -> ImageOutcome:
    """The image's outcome, or "not finished" when it was not started or has not ended in time."""
    if future is not None and future.done():
        return future.result()
    if future is not None:
        future.cancel()
    return failed(OutOfTime().message)


@contextmanager
def lease_renewal(context: WorkerContext, work: ProductWork, attempt: int) -> Iterator[None]:
    """Keep the product's lease alive while it is worked on, so only a lost worker loses it."""
    lease = context.settings.work.product_lease_seconds
    stopped = threading.Event()

    def renew() -> None:
        while not stopped.wait(lease / 3):
            try:
                context.store.run(product_claims.renew_lease(work, attempt, utcnow(), lease))
            except Exception:
                log.warning("could not renew the lease of %s/%s", work.request_id, work.serial_number, exc_info=True)

    renewer = threading.Thread(target=renew, name="lease-renewal", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stopped.set()
        renewer.join()


def submit_image(context: WorkerContext, job: ImageJob, not_after: float) -> Future[ImageOutcome]:
    # Executor threads do not inherit the task's context variables: each image runs in a copy
    # of them (the request and product the task bound), with its position added to the copy only.
    image_context = contextvars.copy_context()
    image_context.run(bind_contextvars, image=job.position)
    return context.image_threads.submit(image_context.run, image_work.run, context, job, not_after)


def image_jobs(context: WorkerContext, work: ProductWork) -> list[ImageJob]:
    """The product's images, each with what the owner's earlier requests left of its source: one
    read for the whole product, none with REUSE_OUTPUTS off or a refresh asked for."""
    remember = context.settings.reuse.outputs
    positions = set(work.to_process())
    remembered: dict[str, SourceDocument] = {}
    if remember and not work.refresh:
        remembered = context.store.run(sources.remembered(work.owner, work.input_image_urls, context.codec_fingerprint))
    return [
        ImageJob(work.request_id, work.serial_number, position, url, work.owner, remembered.get(url), remember)
        for position, url in enumerate(work.input_image_urls)
        if position in positions
    ]


def with_earlier(work: ProductWork, claimed: Claimed, done: dict[int, ImageOutcome]) -> list[ImageOutcome]:
    """The outcome of every image of the product: those done now, and as an earlier run left the rest."""
    outcomes = []
    for position in range(len(work.input_image_urls)):
        if position in done:
            outcomes.append(done[position])
            continue
        key, error, details = claimed.earlier_outcome(position)
        outcomes.append(ImageOutcome(key, error, ImageDetails.model_validate(details), earlier=True))
    return outcomes


def process_product(context: WorkerContext, work: ProductWork, claimed: Claimed) -> list[ImageOutcome]:
    # The product's waits stop at its deadline, whatever its hosts do; images already in a codec
    # process then have its grace to finish (shared.settings.Deadlines, checked at start to end
    # well within the message's visibility timeout, with the lease renewed meanwhile).
    deadlines = context.settings.deadlines
    not_after = time.monotonic() + deadlines.product_seconds
    give_up_at = not_after + deadlines.product_grace_seconds
    # At most DOWNLOAD_CONCURRENCY images of the product at once, the next as one ends: a product
    # of many images on a slow host holds no more of the worker's image threads than any other.
    with lease_renewal(context, work, claimed.attempt):
        waiting = iter(image_jobs(context, work))
        futures: dict[int, Future[ImageOutcome]] = {}
        running: set[Future[ImageOutcome]] = set()
        while True:
            for job in islice(waiting, context.settings.download.concurrency - len(running)):
                futures[job.position] = submit_image(context, job, not_after)
                running.add(futures[job.position])
            if not running:
                break
            done, running = wait(running, max(0.0, give_up_at - time.monotonic()), FIRST_COMPLETED)
            if not done:
                break  # past the grace: what is still running is recorded as not finished
    outcomes = {position: outcome_or_timeout(futures.get(position)) for position in work.to_process()}
    return with_earlier(work, claimed, outcomes)


def given_up(work: ProductWork, max_attempts: int, claimed: Claimed) -> list[ImageOutcome]:
    message = f"given up after {max_attempts} attempts: the worker processing this product was lost each time"
    return with_earlier(work, claimed, {position: failed(message) for position in work.to_process()})


def add_to_metrics(outcomes: list[ImageOutcome]) -> None:
    """Count a product's images once its result is recorded, so a product run twice counts once."""
    for outcome in outcomes:
        if outcome.earlier:
            continue
        details = outcome.details
        metrics.IMAGES.labels(outcome="stored" if outcome.key else "failed").inc()
        if details.reuse:
            metrics.IMAGES_REUSED.labels(reuse=details.reuse).inc()
        if details.reuse != ReuseKind.NOT_MODIFIED:  # bytes downloaded: none for a 304
            metrics.BYTES_IN.inc(details.bytes_in or 0)
        metrics.BYTES_OUT.inc(details.bytes_out or 0)
        for step, ms in (("download", details.download_ms), ("compress", details.compress_ms),
                         ("store", details.store_ms)):  # fmt: skip
            if ms is not None:
                metrics.IMAGE_STEP_SECONDS.labels(step=step).observe(ms / 1000)
