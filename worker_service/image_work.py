"""One image of a product: fetched, then reused or compressed, then stored; each failure kept to itself.

A source the owner's earlier requests fetched (shared/store/sources.py) is asked for again with the
host's validators. A `304 Not Modified`, or a body whose digest is the remembered one, means the
remembered output is copied under this request's key: the codec never sees the image. Anything else
(new, changed, refreshed, or a remembered output that is gone) is decoded and encoded as usual. Either
way the outcome carries what to remember for the next time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from shared.errors import InternalError, ServiceError
from shared.models import ReuseKind, utcnow
from shared.storage import MissingObject, image_key
from shared.store.product_claims import ImageDetails
from shared.store.sources import RememberedOutput, SourceDocument, source_id
from shared.url_rules import redact_credentials
from worker_service.context import WorkerContext
from worker_service.downloader import Check, Download, DownloadError, Validators
from worker_service.image_codec import CompressedImage
from worker_service.step_cpu import CLOCK
from worker_service.storage_waits import waiting_for_storage

log = logging.getLogger("worker.product")


@dataclass(frozen=True)
class ImageJob:
    request_id: str
    serial_number: int
    position: int
    url: str
    owner: str | None
    # What the owner's earlier requests left of this URL, made with today's codec settings.
    remembered: SourceDocument | None
    # Whether to keep what this image teaches for the next time (REUSE_OUTPUTS).
    remember: bool
    # What its host answered a batch's check of it (worker_service/revalidation.py); None: ask.
    checked: Check | None = None

    def key(self, extension: str) -> str:
        return image_key(self.request_id, self.serial_number, self.position, extension)

    def where(self) -> str:
        return f"request {self.request_id}, product {self.serial_number}, image {self.position}"


@dataclass(frozen=True)
class ImageOutcome:
    key: str | None = None
    error: str | None = None
    details: ImageDetails = field(default_factory=ImageDetails)
    # What to remember of the source, once the product's result is merged.
    source: SourceDocument | None = None
    # Left by an earlier run of the product (a retry processes only the images that failed).
    earlier: bool = False


def elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def run(context: WorkerContext, job: ImageJob, not_after: float) -> ImageOutcome:
    """The image's outcome; `details` are filled in as each step finishes, so a failure keeps what was measured."""
    details = ImageDetails()
    try:
        key, source = fetch_and_store(context, job, not_after, details)
    except Exception as raised:
        failure = ServiceError.of(raised)
        # The detail may say what a name resolved to: the log's business, not the client's.
        log.log(failure.log_level, "%s failed: %s (%s)", job.where(), failure.detail, redact_credentials(job.url),
                exc_info=failure.__cause__ if isinstance(failure, InternalError) else None)  # fmt: skip
        details.finished_at = utcnow()
        return ImageOutcome(error=failure.message, details=details)
    details.finished_at = utcnow()
    return ImageOutcome(key=key, details=details, source=source)


def fetch_and_store(
    context: WorkerContext, job: ImageJob, not_after: float, details: ImageDetails
) -> tuple[str, SourceDocument | None]:
    """The image's storage key, and what to remember of its source (None when nothing is remembered)."""
    remembered = job.remembered
    download = fetch(context, job.url, not_after, details, validators_of(remembered))
    digest = download.digest() if job.remember or remembered else None
    check = confirmed(download, digest, remembered, details)
    if remembered is not None and check is not None:
        try:
            return reuse(context, job, remembered, check, details)
        except MissingObject:
            log.info("%s: its remembered output is gone; processing it again", job.where())
            if download.not_modified:
                download = fetch(context, job.url, not_after, details, None)
                digest = download.digest()
    image = compress(context, download, not_after, details)
    key = job.key(image.extension)
    started = time.perf_counter()
    stored(context, lambda: context.storage.put(key, image.data, image.content_type))
    details.store_ms, details.bytes_out = elapsed_ms(started), len(image.data)
    if not job.remember or digest is None:
        return key, None
    output: RememberedOutput = {
        "key": key,
        "request_id": job.request_id,
        "fingerprint": context.codec_fingerprint,
        "format": image.format,
        "extension": image.extension,
        "width": image.width,
        "height": image.height,
        "bytes_out": len(image.data),
    }
    return key, source_document(context, job, download.validators, digest, len(download.data), output)


def confirmed_unchanged(job: ImageJob) -> bool:
    """Whether a batch's check of the image's host showed it unchanged."""
    return job.remembered is not None and job.checked is not None and unchanged(job.checked, job.remembered)


def reused_or_none(context: WorkerContext, job: ImageJob, not_after: float) -> ImageOutcome | None:
    """The image's outcome when a batch's check of its host (`job.checked`) showed it unchanged and its
    remembered output is copied; None when it is to be processed as usual instead (not confirmed,
    changed, its output gone). `not_after` is the lanes' (image_lanes): the copy waits on storage."""
    remembered, check = job.remembered, job.checked
    if remembered is None or check is None or not unchanged(check, remembered):
        return None
    details = ImageDetails(download_ms=check.download_ms, attempts=check.attempts)
    try:
        key, source = reuse(context, job, remembered, check, details)
    except MissingObject:
        log.info("%s: its remembered output is gone; processed as usual", job.where())
        return None
    except ServiceError as failure:
        # Its product's task meets the same failure and logs it as one; here it only explains.
        log.info("%s: not reused (%s); processed as usual", job.where(), failure.detail)
        return None
    except Exception:
        log.warning("%s: not reused; processed as usual", job.where(), exc_info=True)
        return None
    details.finished_at = utcnow()
    return ImageOutcome(key=key, details=details, source=source)


def confirmed(
    download: Download, digest: str | None, remembered: SourceDocument | None, details: ImageDetails
) -> Check | None:
    """The download's check of the remembered source, if it shows the source unchanged."""
    if remembered is None:
        return None
    check = Check.of(download, details.download_ms or 0.0, digest)
    return check if unchanged(check, remembered) else None


def unchanged(check: Check, remembered: SourceDocument) -> bool:
    """Whether the source is the one remembered: the host said so (304), or its body has the same digest."""
    return check.not_modified or check.digest == remembered["digest"]


def stored(context: WorkerContext, write: Callable[[], None]) -> None:
    """A write to storage, waited for while the storage refuses writes (storage_waits)."""
    with CLOCK.timing("store"):
        waiting_for_storage(write, context.settings.storage.retry_seconds, lambda: context.redis)


def fetch(
    context: WorkerContext, url: str, not_after: float, details: ImageDetails, validators: Validators | None
) -> Download:
    started = time.perf_counter()
    try:
        with CLOCK.timing("download"):
            download = context.downloader.fetch(url, not_after, validators)
    except DownloadError as failed_download:
        details.attempts = failed_download.attempts
        raise
    finally:
        details.download_ms = elapsed_ms(started)  # a failed download's time too: how long it took to fail
    details.attempts, details.bytes_in = download.attempts, len(download.data)
    return download


def compress(context: WorkerContext, download: Download, not_after: float, details: ImageDetails) -> CompressedImage:
    with context.codec_pool.process(not_after) as codec:
        started = time.perf_counter()  # after the wait for a free process: the time spent compressing
        with CLOCK.timing("codec_handoff"):
            image = codec.compress(download.data)
        details.compress_ms = elapsed_ms(started)
    details.format, details.width, details.height = image.format, image.width, image.height
    return image


def reuse(
    context: WorkerContext, job: ImageJob, remembered: SourceDocument, check: Check, details: ImageDetails
) -> tuple[str, SourceDocument | None]:
    """Copy the remembered output under this image's key; what to remember of it now."""
    output = remembered["output"]
    key = job.key(output["extension"])
    started = time.perf_counter()
    stored(context, lambda: context.storage.copy(output["key"], key))
    details.store_ms = elapsed_ms(started)
    details.reuse = ReuseKind.NOT_MODIFIED if check.not_modified else ReuseKind.UNCHANGED
    details.format, details.width, details.height = output["format"], output["width"], output["height"]
    details.bytes_in, details.bytes_out = remembered["bytes_in"], output["bytes_out"]
    # A 304 may carry no validators: the remembered ones still hold.
    validators = check.validators if not check.not_modified else newest(check.validators, remembered)
    if not job.remember or not worth_writing(context, remembered, validators):
        return key, None
    # The output stays where it is: this request's copy is its own to delete.
    return key, source_document(context, job, validators, remembered["digest"], remembered["bytes_in"], output)


def worth_writing(context: WorkerContext, remembered: SourceDocument, validators: Validators) -> bool:
    """Whether a reused source's document must be written again: the host named it anew, or half its
    time is gone. A catalogue re-imported every night then writes each source about twice a
    REUSE_MEMORY_DAYS, not every night."""
    if validators != Validators(remembered["etag"], remembered["last_modified"]):
        return True
    half_gone = remembered["expires_at"] - timedelta(days=context.settings.reuse.memory_days / 2)
    return utcnow() >= half_gone


def source_document(
    context: WorkerContext,
    job: ImageJob,
    validators: Validators,
    digest: str,
    bytes_in: int,
    output: RememberedOutput,
) -> SourceDocument:
    return {
        "_id": source_id(job.owner, job.url),
        "etag": validators.etag,
        "last_modified": validators.last_modified,
        "digest": digest,
        "bytes_in": bytes_in,
        "output": output,
        "expires_at": expiry(context, utcnow()),
    }


def expiry(context: WorkerContext, now: datetime) -> datetime:
    return now + timedelta(days=context.settings.reuse.memory_days)


def validators_of(remembered: SourceDocument | None) -> Validators | None:
    if remembered is None or not (remembered["etag"] or remembered["last_modified"]):
        return None
    return Validators(remembered["etag"], remembered["last_modified"])


def newest(answered: Validators, remembered: SourceDocument) -> Validators:
    return Validators(answered.etag or remembered["etag"], answered.last_modified or remembered["last_modified"])
