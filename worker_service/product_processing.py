"""One product: every image downloaded, compressed and stored, each failure kept to itself."""

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager

from celery.exceptions import SoftTimeLimitExceeded

from shared.queue import PRODUCT_SOFT_TIME_LIMIT
from shared.storage import image_key
from shared.url_rules import redact_credentials
from worker_service import product_claims
from worker_service.context import WorkerContext
from worker_service.downloader import DownloadError
from worker_service.image_codec import ImageRejected, compress
from worker_service.product_claims import ImageOutcome, ProductWork

log = logging.getLogger("worker.product")

# Downloads of a product stop this long after it starts, whatever its hosts do, so that
# the task records its result well before Celery's soft time limit interrupts it.
PRODUCT_DEADLINE_SECONDS = PRODUCT_SOFT_TIME_LIMIT - 60


def process_image(context: WorkerContext, work: ProductWork, position: int, not_after: float) -> ImageOutcome:
    url = work.input_image_urls[position]
    where = f"request {work.request_id}, product {work.serial_number}, image {position}"
    try:
        data = context.downloader.fetch(url, not_after)
        with context.codec_slots:
            image = compress(data, context.codec_options)
        key = image_key(work.request_id, work.serial_number, position, image.extension)
        context.storage.put(key, image.data, image.content_type)
        return ImageOutcome(key=key)
    except DownloadError as error:
        # The detail may say what a name resolved to: the log's business, not the client's.
        log.info("%s failed: %s (%s)", where, error.detail, redact_credentials(url))
        return ImageOutcome(error=error.message)
    except ImageRejected as error:
        log.info("%s refused: %s (%s)", where, error.message, redact_credentials(url))
        return ImageOutcome(error=error.message)
    except Exception:
        log.exception("%s: unexpected error (%s)", where, redact_credentials(url))
        return ImageOutcome(error="internal error while processing this image")


def outcome_or_timeout(future: Future[ImageOutcome]) -> ImageOutcome:
    if future.done():
        return future.result()
    future.cancel()
    return ImageOutcome(error="processing took longer than the product's time limit")


@contextmanager
def lease_renewal(context: WorkerContext, work: ProductWork, attempt: int) -> Iterator[None]:
    """Keep the product's lease alive while it is worked on, so only a lost worker loses it."""
    lease = context.settings.product_lease_seconds
    stopped = threading.Event()

    def renew() -> None:
        while not stopped.wait(lease / 3):
            try:
                product_claims.renew_lease(context.claims, work, attempt, lease)
            except Exception:
                log.warning("could not renew the lease of %s/%s", work.request_id, work.serial_number, exc_info=True)

    renewer = threading.Thread(target=renew, name="lease-renewal", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stopped.set()
        renewer.join()


def process_product(context: WorkerContext, work: ProductWork, attempt: int) -> list[ImageOutcome]:
    not_after = time.monotonic() + PRODUCT_DEADLINE_SECONDS
    futures = [
        context.image_threads.submit(process_image, context, work, position, not_after)
        for position in range(len(work.input_image_urls))
    ]
    with lease_renewal(context, work, attempt):
        try:
            return [future.result() for future in futures]
        except SoftTimeLimitExceeded:
            # Keep what finished; the rest is recorded as timed out.
            return [outcome_or_timeout(future) for future in futures]


def given_up(work: ProductWork, max_attempts: int) -> list[ImageOutcome]:
    message = f"given up after {max_attempts} attempts: the worker processing this product was lost each time"
    return [ImageOutcome(error=message) for _ in work.input_image_urls]
