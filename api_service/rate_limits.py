"""Rate limits, counted in Redis so that every API process shares them.

Two limits, per caller (its API key's owner digest, or its address while keys are off):

- `RATE_LIMIT_REQUESTS_PER_MINUTE`: every /api route (`limit_requests`, wired for the API
  routers in api_service/main.py);
- `RATE_LIMIT_UPLOADS_PER_MINUTE`: the upload routes (`limit_uploads`), counted as well.

`0` turns a limit off. Past a limit: `429` `{"detail": ...}` with `Retry-After`, the seconds
until the window lets one more call through (at least 1).

The strategy is the `limits` package's *moving window*: each caller's calls of the last 60 s are
kept in one Redis list (at most the limit long) and a call is let through only if fewer than the
limit happened in the 60 s before it. Unlike a fixed window it never lets twice the limit through
across a window boundary, and the oldest entry tells exactly when the next call will be let
through, so `Retry-After` is exact. It costs one Lua script call per limit per request.

Redis that does not answer must not stop the API (the status route does not otherwise need it):
each check is bounded to `CHECK_TIMEOUT_SECONDS`; on any failure the call is let through (fail
open), a warning is logged (at most every `WARN_EVERY_SECONDS`), and the limiter is skipped for
`SKIP_AFTER_FAILURE_SECONDS`, so an outage costs at most one slow check per process that often.
"""

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api_service.auth import caller_owner
from shared.settings import ApiSettings

log = logging.getLogger("api.rate_limits")

KEY_PREFIX = "image-api:rate-limit"
SOCKET_TIMEOUT_SECONDS = 0.5
CHECK_TIMEOUT_SECONDS = 1.0
SKIP_AFTER_FAILURE_SECONDS = 5.0
WARN_EVERY_SECONDS = 30.0


def limits_storage_uri(redis_url: str) -> str:
    """The `limits` package's URI for a redis-py URL: `async+` in front of the scheme
    (`redis://h:6379/0` -> `async+redis://h:6379/0`; `unix:///s.sock` -> `async+redis+unix:///s.sock`)."""
    scheme, separator, rest = redis_url.partition("://")
    if not separator:
        raise ValueError("REDIS_URL must be a URL such as redis://host:6379/0")
    if scheme == "unix":
        scheme = "redis+unix"
    return f"async+{scheme}://{rest}"


class RateLimits:
    """The two limits of one API process, on the service's Redis."""

    def __init__(
        self, settings: ApiSettings, redis_url: str | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.requests = per_minute(settings.rate_limit_requests_per_minute, "requests")
        self.uploads = per_minute(settings.rate_limit_uploads_per_minute, "uploads")
        self.clock = clock
        self.skip_until = 0.0
        self.warned_at = -math.inf
        self.storage: RedisStorage | None = None
        self.limiter: MovingWindowRateLimiter | None = None
        if redis_url and (self.requests or self.uploads):
            # No retries: a check that fails is let through at once rather than tried again.
            client_options: dict[str, Any] = {"retry": Retry(NoBackoff(), 0)}
            self.storage = RedisStorage(
                limits_storage_uri(redis_url),
                implementation="redispy",
                key_prefix=KEY_PREFIX,
                socket_timeout=SOCKET_TIMEOUT_SECONDS,
                socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
                **client_options,
            )
            self.limiter = MovingWindowRateLimiter(self.storage)

    async def check(self, item: RateLimitItem | None, caller: str) -> None:
        """Count one call of `caller` against `item`; a 429 with Retry-After past the limit."""
        if item is None or self.limiter is None or self.clock() < self.skip_until:
            return
        try:
            retry_after = await asyncio.wait_for(self.retry_after(item, caller), CHECK_TIMEOUT_SECONDS)
        except Exception as error:  # noqa: BLE001 - whatever Redis does, the API keeps answering
            self.redis_failed(error)
            return
        if retry_after is not None:
            raise HTTPException(
                429,
                f"rate limit of {item.amount} {item.namespace} a minute reached; retry in {retry_after} s",
                headers={"Retry-After": str(retry_after)},
            )

    async def retry_after(self, item: RateLimitItem, caller: str) -> int | None:
        """None if the call was let through (and counted); else the seconds until one more is."""
        assert self.limiter is not None
        if await self.limiter.hit(item, caller):
            return None
        stats = await self.limiter.get_window_stats(item, caller)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def redis_failed(self, error: Exception) -> None:
        now = self.clock()
        self.skip_until = now + SKIP_AFTER_FAILURE_SECONDS
        if now - self.warned_at >= WARN_EVERY_SECONDS:
            self.warned_at = now
            log.warning(
                "rate limits not counted: Redis did not answer (%s); letting requests through",
                type(error).__name__ if not str(error) else error,
            )

    async def close(self) -> None:
        if self.storage is not None:
            # limits keeps its redis-py client on its bridge, untyped.
            client: Any = getattr(self.storage.bridge, "storage", None)
            if client is not None:
                await client.aclose()


def per_minute(amount: int, namespace: str) -> RateLimitItem | None:
    return RateLimitItemPerMinute(amount, namespace=namespace) if amount > 0 else None


def rate_limits_of(request: Request) -> RateLimits:
    # create_app sets it; Starlette types app.state as Any.
    limits: RateLimits = request.app.state.rate_limits
    return limits


def caller_identity(request: Request, owner: str | None) -> str:
    """Whom a call counts against: its key's owner digest, or its address while keys are off."""
    if owner is not None:
        return f"key:{owner}"
    return f"address:{request.client.host if request.client else 'unknown'}"


async def limit_requests(request: Request, owner: Annotated[str | None, Depends(caller_owner)]) -> None:
    limits = rate_limits_of(request)
    await limits.check(limits.requests, caller_identity(request, owner))


async def limit_uploads(request: Request, owner: Annotated[str | None, Depends(caller_owner)]) -> None:
    limits = rate_limits_of(request)
    await limits.check(limits.uploads, caller_identity(request, owner))
