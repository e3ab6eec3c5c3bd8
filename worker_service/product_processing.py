"""One product: every image downloaded, compressed and stored, each failure kept to itself."""

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice

from structlog.contextvars import bind_contextvars

from shared import metrics
from shared.errors import InternalError, OutOfTime, ServiceError
from shared.models import ProductStatus, utcnow
from shared.storage import image_key
from shared.store import product_claims, requests
from shared.store.product_claims import ImageDetails, ProductResult, ProductWork
from shared.url_rules import redact_credentials
from worker_service.context import WorkerContext
from worker_service.downloader import DownloadError

log = logging.getLogger("worker.product")


@dataclass(frozen=True)
class ImageOutcome:
    key: str | None = None
    error: str | None = None
    details: ImageDetails = field(default_factory=ImageDetails)


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
        "bytes_in": sum(outcome.details.bytes_in or 0 for outcome in outcomes),
        "bytes_out": sum(outcome.details.bytes_out or 0 for outcome in outcomes),
    }


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def download_compress_store(
    context: WorkerContext, work: ProductWork, position: int, not_after: float, details: ImageDetails
) -> str:
    """The image's storage key; `details` filled in as each step finishes, so a failure keeps what was measured."""
    started = time.perf_counter()
    try:
        download = context.downloader.fetch(work.input_image_urls[position], not_after)
    except DownloadError as failed_download:
        details.attempts = failed_download.attempts
        raise
    finally:
        details.download_ms = elapsed_ms(started)  # a failed download's time too: how long it took to fail
    details.attempts, details.bytes_in = download.attempts, len(download.data)
    with context.codec_pool.process(not_after) as codec:
        started = time.perf_counter()  # after the wait for a free process: the time spent compressing
        image = codec.compress(download.data)
        details.compress_ms = elapsed_ms(started)
    details.format, details.width, details.height = image.format, image.width, image.height
    key = image_key(work.request_id, work.serial_number, position, image.extension)
    started = time.perf_counter()
    context.storage.put(key, image.data, image.content_type)
    details.store_ms, details.bytes_out = elapsed_ms(started), len(image.data)
    return key


def process_image(context: WorkerContext, work: ProductWork, position: int, not_after: float) -> ImageOutcome:
    url = work.input_image_urls[position]
    where = f"request {work.request_id}, product {work.serial_number}, image {position}"
    details = ImageDetails()
    key, error = None, None
    try:
        key = download_compress_store(context, work, position, not_after, details)
    except Exception as raised:
        failure = ServiceError.of(raised)
        # The detail may say what a name resolved to: the log's business, not the client's.
        log.log(failure.log_level, "%s failed: %s (%s)", where, failure.detail, redact_credentials(url),
                exc_info=failure.__cause__ if isinstance(failure, InternalError) else None)  # fmt: skip
        error = failure.message
    details.finished_at = utcnow()
    return ImageOutcome(key=key, error=error, details=details)


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


def submit_image(context: WorkerContext, work: ProductWork, position: int, not_after: float) -> Future[ImageOutcome]:
    # Executor threads do not inherit the task's context variables: each image runs in a copy
    # of them (the request and product the task bound), with its position added to the copy only.
    image_context = contextvars.copy_context()
    image_context.run(bind_contextvars, image=position)
    return context.image_threads.submit(image_context.run, process_image, context, work, position, not_after)


def process_product(context: WorkerContext, work: ProductWork, attempt: int) -> list[ImageOutcome]:
    # The product's waits stop at its deadline, whatever its hosts do; images already in a codec
    # process then have its grace to finish (shared.settings.Deadlines, checked at start to end
    # well within the message's visibility timeout, with the lease renewed meanwhile).
    deadlines = context.settings.deadlines
    not_after = time.monotonic() + deadlines.product_seconds
    give_up_at = not_after + deadlines.product_grace_seconds
    # At most DOWNLOAD_CONCURRENCY images of the product at once, the next as one ends: a product
    # of many images on a slow host holds no more of the worker's image threads than any other.
    waiting = iter(range(len(work.input_image_urls)))
    futures: dict[int, Future[ImageOutcome]] = {}
    running: set[Future[ImageOutcome]] = set()
    with lease_renewal(context, work, attempt):
        while True:
            for position in islice(waiting, context.settings.download.concurrency - len(running)):
                futures[position] = submit_image(context, work, position, not_after)
                running.add(futures[position])
            if not running:
                break
            done, running = wait(running, max(0.0, give_up_at - time.monotonic()), FIRST_COMPLETED)
            if not done:
                break  # past the grace: what is still running is recorded as not finished
    return [outcome_or_timeout(futures.get(position)) for position in range(len(work.input_image_urls))]


def given_up(work: ProductWork, max_attempts: int) -> list[ImageOutcome]:
    message = f"given up after {max_attempts} attempts: the worker processing this product was lost each time"
    return [failed(message) for _ in work.input_image_urls]


def add_to_metrics(outcomes: list[ImageOutcome]) -> None:
    """Count a product's images once its result is recorded, so a product run twice counts once."""
    for outcome in outcomes:
        details = outcome.details
        metrics.IMAGES.labels(outcome="stored" if outcome.key else "failed").inc()
        metrics.BYTES_IN.inc(details.bytes_in or 0)
        metrics.BYTES_OUT.inc(details.bytes_out or 0)
        for step, ms in (("download", details.download_ms), ("compress", details.compress_ms),
                         ("store", details.store_ms)):  # fmt: skip
            if ms is not None:
                metrics.IMAGE_STEP_SECONDS.labels(step=step).observe(ms / 1000)
