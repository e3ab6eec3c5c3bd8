"""Storage that refuses writes is the service's fault, not the image's: the image waits.

A write the store refuses (a full disk, an S3 store that is down or answers 5xx: `StorageUnavailable`)
is tried again with backoff, up to `STORAGE_RETRY_SECONDS`; only then does the image fail with
`storage unavailable`. Meanwhile the product's lease is renewed, so its request stays `processing`;
each refusal is counted (`image_service_storage_refusals_total`), logged, and said in Redis for a
while, so that `/readyz` reports the storage as refusing writes from whichever host saw it.
"""

import contextlib
import logging
import time
from collections.abc import Callable
from typing import TypeVar

import redis

from shared import metrics
from shared.storage import REFUSING_KEY, StorageUnavailable

log = logging.getLogger("worker.storage")
T = TypeVar("T")

# How long the workers' word that storage refused a write stands after the last refusal.
REFUSING_SAID_SECONDS = 30
FIRST_WAIT_SECONDS = 0.5
LONGEST_WAIT_SECONDS = 10.0


def waiting_for_storage(
    write: Callable[[], T],
    retry_seconds: float,
    redis_client: Callable[[], redis.Redis],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`write()`, tried again while the storage refuses it, for up to `retry_seconds`; a refusal is
    said in Redis (`redis_client()`, asked for only then)."""
    give_up_at = time.monotonic() + retry_seconds
    wait = FIRST_WAIT_SECONDS
    while True:
        try:
            return write()
        except StorageUnavailable as refused:
            metrics.STORAGE_REFUSALS.inc()
            say_refusing(redis_client, refused.detail)
            if time.monotonic() + wait > give_up_at:
                raise
            log.warning("storage refused a write (%s); trying again in %.1f s", refused.detail, wait)
            sleep(wait)
            wait = min(wait * 2, LONGEST_WAIT_SECONDS)


def say_refusing(redis_client: Callable[[], redis.Redis], detail: str) -> None:
    with contextlib.suppress(redis.RedisError, RuntimeError):  # /readyz then learns it from its own probe
        redis_client().set(REFUSING_KEY, detail[:500], ex=REFUSING_SAID_SECONDS)
