"""Whether storage accepts writes, for GET /readyz: a write of the API's own, and what the workers saw.

The API writes a small object and removes it (at most every few seconds, whatever the polling), and
a worker whose write was refused says so in Redis for a while (worker_service/storage_waits.py): on
several machines the worker hosts may see what the API host's probe does not.
"""

import asyncio
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.storage import REFUSING_KEY, Storage, StorageUnavailable

PROBE_EVERY_SECONDS = 5.0
PROBE_TIMEOUT_SECONDS = 2.0


class StorageProbe:
    def __init__(self, storage: Storage, redis: aioredis.Redis) -> None:
        self.storage = storage
        self.redis = redis
        self._lock = asyncio.Lock()
        self._probed_at = float("-inf")
        self._writable = True

    async def writable(self) -> bool:
        return await self._probe() and not await self._workers_saw_refusals()

    async def _probe(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._probed_at >= PROBE_EVERY_SECONDS:
                self._writable = await self._write_once()
                self._probed_at = time.monotonic()
            return self._writable

    async def _write_once(self) -> bool:
        try:
            await asyncio.wait_for(asyncio.to_thread(self.storage.probe), PROBE_TIMEOUT_SECONDS)
            return True
        except (StorageUnavailable, TimeoutError):
            return False

    async def _workers_saw_refusals(self) -> bool:
        try:
            return bool(await self.redis.exists(REFUSING_KEY))
        except RedisError:
            return False  # Redis itself is reported on its own
