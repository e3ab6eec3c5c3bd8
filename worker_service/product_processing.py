"""One product: its images in the worker's threads, within its deadline, with its lease kept alive
(worker_service/lease_keeper.py); then what came of it."""

import logging
import time

from shared import metrics
from shared.errors import OutOfTime
from shared.models import ProductStatus, ReuseKind, utcnow
from shared.store import requests, sources
from shared.store.product_claims import Claimed, ImageDetails, ProductResult, ProductWork
from shared.store.sources import SourceDocument
from worker_service import image_work
from worker_service.context import WorkerContext
from worker_service.image_lanes import run_in_lanes
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


def outcome_or_timeout(outcome: ImageOutcome | None) -> ImageOutcome:
    """The image's outcome, or "not finished" when it was not started or has not ended in time."""
    return outcome if outcome is not None else failed(OutOfTime().message)


def image_jobs(context: WorkerContext, work: ProductWork) -> list[ImageJob]:
    """The product's images, each with what the owner's earlier requests left of its source: one
    read for the whole product, none with REUSE_OUTPUTS off, a refresh asked for, or in a new catalogue."""
    remembered: dict[str, SourceDocument] = {}
    if context.settings.reuse.outputs and not work.refresh and not work.new_catalogue:
        remembered = context.store.run(sources.remembered(work.owner, work.input_image_urls, context.codec_fingerprint))
    return jobs_of(context, work, remembered)


def jobs_of(context: WorkerContext, work: ProductWork, remembered: dict[str, SourceDocument]) -> list[ImageJob]:
    positions = set(work.to_process())
    remember = context.settings.reuse.outputs
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
    with context.lease_keeper.keeping(work, claimed.attempt):
        jobs = image_jobs(context, work)
        ended = run_in_lanes(context, image_work.run, jobs, not_after, give_up_at)
    outcomes = {job.position: outcome_or_timeout(outcome) for job, outcome in zip(jobs, ended, strict=True)}
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
