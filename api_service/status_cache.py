"""A short-lived cache of status answers, shared by everyone polling the same request.

Reading a page of products makes MongoDB read the whole request document, whose size
grows with the request, and a busy database answers slowly. So one read serves every
poll of the same page for a while, and when that answer is stale the pollers still get
it at once while a single read refreshes it in the background (stale-while-revalidate).
The refresh interval grows with what the read costs — `ttl`, or 25 times the last read's
duration if longer — so polling a large request takes at most about 4 % of the
database's time, whatever its size.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_ENTRIES = 4096
COST_FACTOR = 25


@dataclass
class Entry:
    read_at: float
    fresh_for: float
    refresh: asyncio.Task | None = None
    value: bytes | None = None
    has_value: bool = False


class StatusCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.entries: dict[tuple, Entry] = {}

    async def get(self, key: tuple, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        if self.ttl <= 0:
            return await load()
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = Entry(read_at=0.0, fresh_for=0.0)
            self.evict_oldest()
        if time.monotonic() - entry.read_at > entry.fresh_for and entry.refresh is None:
            entry.refresh = asyncio.ensure_future(self.reload(key, entry, load))
        if entry.has_value:
            return entry.value
        return await asyncio.shield(entry.refresh)

    async def reload(self, key: tuple, entry: Entry, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        started = time.monotonic()
        try:
            value = await load()
        except Exception:
            if self.entries.get(key) is entry and not entry.has_value:
                del self.entries[key]
            raise
        finally:
            entry.refresh = None
        entry.value, entry.has_value = value, True
        entry.read_at = time.monotonic()
        entry.fresh_for = max(self.ttl, COST_FACTOR * (entry.read_at - started))
        return value

    def put(self, key: tuple, value: bytes) -> None:
        """Seed an answer the caller already has, such as a request's first page at upload."""
        if self.ttl > 0:
            self.entries[key] = Entry(read_at=time.monotonic(), fresh_for=self.ttl, value=value, has_value=True)
            self.evict_oldest()

    def forget(self, request_id: str) -> None:
        """Drop a request's answers after a change made through this API process."""
        for key in [key for key in self.entries if key[0] == request_id]:
            del self.entries[key]

    def evict_oldest(self) -> None:
        while len(self.entries) > MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]
