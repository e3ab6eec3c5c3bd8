"""A short-lived cache of status answers, shared by everyone polling the same request.

Reading a page of products makes MongoDB read the whole request document, whose size
grows with the request, and a busy database answers slowly. So one read serves every
poll of the same page for a while, and a refresh is shared too.

The contract bounds staleness: an answer shows the stored state as of at most
`max_age` (2 s) before it was asked for. An answer's age counts from the moment its read
BEGAN, since the read may have seen the document at any point after that. An answer is

- served as it is while younger than its fresh time;
- served at once while a single read refreshes it, as long as it is younger than `max_age`
  (stale-while-revalidate);
- past `max_age`, dropped: every poller awaits the one shared read, and only joins a read
  that began less than `max_age` ago, so a hung read is never waited on past the bound.

The fresh time grows with what a read costs — `ttl`, or 25 times the last read's duration
if longer — so polling a large request takes at most about 4 % of the database's time,
but never so long that the next refresh could not finish within `max_age`.

The cache is bounded in bytes (least recently used answers go first) and in time.
"""

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

# CONTRACT §4: an answer shows the stored state as of at most 2 s before it was asked for.
MAX_AGE_SECONDS = 2.0
COST_FACTOR = 25
# The key, the entry and its dict slot, so that small answers (and a 404's None) count too.
ENTRY_OVERHEAD_BYTES = 256

# (request id, offset, limit, owner digest or None): one page of one request, as one caller sees it.
Key = tuple[str, int, int, str | None]
Load = Callable[[], Awaitable[bytes | None]]


@dataclass(frozen=True, slots=True)
class Answer:
    value: bytes | None
    read_began: float
    fresh_for: float

    @property
    def size(self) -> int:
        return ENTRY_OVERHEAD_BYTES + len(self.value or b"")


@dataclass(frozen=True, slots=True)
class Read:
    task: asyncio.Future[bytes | None]
    began: float


class StatusCache:
    def __init__(
        self,
        ttl: float,
        max_bytes: int = 32 * 1024 * 1024,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.clock = clock
        self.answers: OrderedDict[Key, Answer] = OrderedDict()  # least recently used first
        self.reads: dict[Key, Read] = {}  # the newest read in flight per key
        self.bytes = 0
        self.next_expiry_sweep = 0.0

    async def get(self, key: Key, load: Load) -> bytes | None:
        if self.ttl <= 0:
            return await load()
        now = self.clock()
        self.drop_expired(now)
        answer = self.answers.get(key)
        if answer is not None:
            age = now - answer.read_began
            if age < self.max_age:
                self.answers.move_to_end(key)
                if age >= answer.fresh_for and key not in self.reads:
                    self.start_read(key, load, now)
                return answer.value
            self.drop(key)
        read = self.reads.get(key)
        if read is None or now - read.began >= self.max_age:
            read = self.start_read(key, load, now)
        # Shielded: a poller that goes away must not cancel the read the others await.
        return await asyncio.shield(read.task)

    def put(self, key: Key, value: bytes) -> None:
        """Seed an answer the caller already has, such as a request's first page at upload."""
        if self.ttl > 0:
            now = self.clock()
            self.store(key, Answer(value, read_began=now, fresh_for=min(self.ttl, self.max_age)))

    def forget(self, request_id: str) -> None:
        """Drop a request's answers after a change made through this API process, or when a
        worker announces it finished (shared/request_events.py).

        Reads in flight are dropped too: they may have seen the document before the change.
        """
        for key in [key for key in self.answers if key[0] == request_id]:
            self.drop(key)
        for key in [key for key in self.reads if key[0] == request_id]:
            del self.reads[key]

    def start_read(self, key: Key, load: Load, now: float) -> Read:
        read = Read(asyncio.ensure_future(load()), began=now)
        self.reads[key] = read
        read.task.add_done_callback(partial(self.finish_read, key, read))
        return read

    def finish_read(self, key: Key, read: Read, task: asyncio.Future[bytes | None]) -> None:
        # Only the newest read of a key answers for it: an older one that ends later, or one
        # dropped by `forget`, would put back an older state.
        if self.reads.get(key) is not read:
            return
        del self.reads[key]
        # A failure reaches every poller awaiting this read and is not cached. Reading it
        # here also keeps asyncio from reporting a background refresh's error as unretrieved.
        if task.cancelled() or task.exception() is not None:
            return
        now = self.clock()
        duration = now - read.began
        if duration >= self.max_age:
            return  # too old to serve to anyone asking from now on
        # The next refresh, started once this answer stops being fresh, should end before it
        # is too old to serve, so pollers keep getting an answer at once.
        fresh_for = min(max(self.ttl, COST_FACTOR * duration), self.max_age - duration)
        self.store(key, Answer(task.result(), read.began, fresh_for))

    def store(self, key: Key, answer: Answer) -> None:
        self.drop(key)
        if answer.size > self.max_bytes:
            return
        self.answers[key] = answer
        self.bytes += answer.size
        while self.bytes > self.max_bytes:
            self.drop(next(iter(self.answers)))

    def drop(self, key: Key) -> None:
        answer = self.answers.pop(key, None)
        if answer is not None:
            self.bytes -= answer.size

    def drop_expired(self, now: float) -> None:
        """Drop answers too old to be served; a sweep every `max_age` keeps it cheap."""
        if now < self.next_expiry_sweep:
            return
        self.next_expiry_sweep = now + self.max_age
        for key in [key for key, answer in self.answers.items() if now - answer.read_began >= self.max_age]:
            self.drop(key)
