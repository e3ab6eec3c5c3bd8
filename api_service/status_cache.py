"""A short-lived cache of status answers, shared by everyone polling the same request.

Reading a page of products makes MongoDB read the whole request document, whose size
grows with the request. Fifty clients polling one large request would each pay for
that; instead, one read serves every poll for `ttl` seconds, and concurrent misses wait
for the same read (single flight). Progress is at most `ttl` seconds old.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Hashable

MAX_ENTRIES = 4096


class StatusCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[Hashable, tuple[float, asyncio.Task]] = {}

    async def get(self, key: tuple, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        if self.ttl <= 0:
            return await load()
        now = time.monotonic()
        cached = self.entries.get(key)
        if cached is None or now - cached[0] > self.ttl:
            cached = (now, asyncio.ensure_future(load()))
            self.entries[key] = cached
            self.evict_oldest()
        try:
            return await asyncio.shield(cached[1])
        except Exception:
            self.entries.pop(key, None)
            raise

    def forget(self, request_id: str) -> None:
        """Drop a request's answers after a change made through this API process."""
        for key in [key for key in self.entries if key[0] == request_id]:
            del self.entries[key]

    def evict_oldest(self) -> None:
        while len(self.entries) > MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]
