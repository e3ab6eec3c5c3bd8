"""The status cache: one read serves every poller, and no answer is older than the 2 s bound.

Time is a fake clock moved by the tests; a read lasts as long as the test holds its gate.
"""

import asyncio

import pytest

from api_service.status_cache import ENTRY_OVERHEAD_BYTES, StatusCache

KEY = ("r", 0, 100)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """Counts reads; each one takes `cost` seconds of the fake clock, and waits for `gate` when it is closed."""

    def __init__(self, clock: FakeClock, cost: float = 0.0) -> None:
        self.clock = clock
        self.cost = cost
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.failure: Exception | None = None

    async def __call__(self) -> bytes:
        self.calls += 1
        answer = f"answer {self.calls}".encode()
        await self.gate.wait()
        self.clock.now += self.cost
        if self.failure is not None:
            raise self.failure
        return answer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def cache_with(clock: FakeClock, ttl: float = 0.5, **options) -> StatusCache:
    return StatusCache(ttl=ttl, clock=clock, **options)


async def settle() -> None:
    """Lets every task that can run do so: a background refresh starts, a finished one is stored."""
    for _ in range(5):
        await asyncio.sleep(0)


async def still_waiting(*polls: asyncio.Future) -> bool:
    await settle()
    return not any(poll.done() for poll in polls)


async def test_concurrent_polls_share_one_read(clock):
    cache, load = cache_with(clock), Loader(clock)
    load.gate.clear()
    polls = [asyncio.ensure_future(cache.get(KEY, load)) for _ in range(50)]
    assert await still_waiting(*polls)
    load.gate.set()
    assert set(await asyncio.gather(*polls)) == {b"answer 1"}
    assert load.calls == 1


async def test_a_fresh_answer_is_served_without_a_read(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock)
    await cache.get(KEY, load)
    clock.now += 0.4
    assert await cache.get(KEY, load) == b"answer 1"
    assert load.calls == 1


async def test_a_stale_answer_is_served_at_once_while_one_read_refreshes_it(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock)
    await cache.get(KEY, load)
    clock.now += 1.0  # stale, but within the 2 s bound
    load.gate.clear()  # the database is busy now
    stale = [await cache.get(KEY, load) for _ in range(20)]
    assert set(stale) == {b"answer 1"}
    await settle()
    assert load.calls == 2
    load.gate.set()
    await settle()
    assert await cache.get(KEY, load) == b"answer 2"
    assert load.calls == 2


async def test_an_answer_older_than_the_bound_is_never_served(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock)
    await cache.get(KEY, load)
    clock.now += 2.0
    load.gate.clear()
    polls = [asyncio.ensure_future(cache.get(KEY, load)) for _ in range(10)]
    assert await still_waiting(*polls), "an answer 2 s old was served"
    load.gate.set()
    assert set(await asyncio.gather(*polls)) == {b"answer 2"}
    assert load.calls == 2


async def test_age_counts_from_when_the_read_began(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock, cost=1.5)
    await cache.get(KEY, load)  # began at 1000, ended at 1001.5
    clock.now += 0.5  # 2 s after the read began, 0.5 s after it ended
    load.gate.clear()
    poll = asyncio.ensure_future(cache.get(KEY, load))
    assert await still_waiting(poll)
    load.gate.set()
    assert await poll == b"answer 2"


async def test_a_stale_answer_is_served_only_until_the_bound_while_its_refresh_hangs(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock)
    await cache.get(KEY, load)
    clock.now += 1.0
    load.gate.clear()
    assert await cache.get(KEY, load) == b"answer 1"  # starts the refresh, which hangs
    clock.now += 1.0
    poll = asyncio.ensure_future(cache.get(KEY, load))
    assert await still_waiting(poll)
    assert load.calls == 2  # it awaits the refresh begun 1 s ago
    clock.now += 1.0
    later = asyncio.ensure_future(cache.get(KEY, load))
    assert await still_waiting(later)
    assert load.calls == 3  # that refresh began 2 s ago: too old to join, a new read begins
    load.gate.set()
    assert await poll == b"answer 2"
    assert await later == b"answer 3"
    assert await cache.get(KEY, load) == b"answer 3"


async def test_an_expensive_read_is_repeated_less_often(clock):
    cache, load = cache_with(clock, ttl=0.01), Loader(clock, cost=0.02)
    await cache.get(KEY, load)
    clock.now += 0.4  # 40 times the ttl, but less than 25 times the read
    await cache.get(KEY, load)
    assert load.calls == 1
    clock.now += 0.2
    await cache.get(KEY, load)
    await settle()
    assert load.calls == 2


async def test_the_cost_based_interval_never_goes_past_the_bound(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock, cost=0.4)  # 25 times the read would be 10 s
    await cache.get(KEY, load)
    clock.now += 1.2  # 1.6 s after the read began: the refresh must start now to end within 2 s
    assert await cache.get(KEY, load) == b"answer 1"
    await settle()
    assert load.calls == 2


async def test_a_read_that_took_longer_than_the_bound_is_not_kept(clock):
    cache, load = cache_with(clock), Loader(clock, cost=2.5)
    assert await cache.get(KEY, load) == b"answer 1"  # its pollers asked while it ran
    assert await cache.get(KEY, load) == b"answer 2"
    assert KEY not in cache.answers


async def test_a_failed_refresh_reaches_every_waiter_and_is_not_cached(clock):
    cache, load = cache_with(clock), Loader(clock)
    await cache.get(KEY, load)
    clock.now += 3.0
    load.gate.clear()
    load.failure = RuntimeError("database down")
    polls = [asyncio.ensure_future(cache.get(KEY, load)) for _ in range(5)]
    assert await still_waiting(*polls)
    load.gate.set()
    results = await asyncio.gather(*polls, return_exceptions=True)
    assert all(isinstance(result, RuntimeError) for result in results)
    assert load.calls == 2
    assert KEY not in cache.answers and KEY not in cache.reads
    load.failure = None
    assert await cache.get(KEY, load) == b"answer 3"


async def test_a_failed_first_read_is_not_cached(clock):
    cache, load = cache_with(clock), Loader(clock)
    load.failure = RuntimeError("database down")
    with pytest.raises(RuntimeError):
        await cache.get(KEY, load)
    load.failure = None
    assert await cache.get(KEY, load) == b"answer 2"


async def test_a_poller_that_goes_away_does_not_cancel_the_shared_read(clock):
    cache, load = cache_with(clock), Loader(clock)
    load.gate.clear()
    leaving, staying = asyncio.ensure_future(cache.get(KEY, load)), asyncio.ensure_future(cache.get(KEY, load))
    assert await still_waiting(leaving, staying)
    leaving.cancel()
    load.gate.set()
    assert await staying == b"answer 1"
    assert load.calls == 1


async def test_the_cache_stays_within_its_bytes_and_drops_the_least_recently_used(clock):
    answer_size = ENTRY_OVERHEAD_BYTES + len(b"answer 1")
    cache, load = cache_with(clock, max_bytes=3 * answer_size), Loader(clock)
    for request in ("a", "b", "c"):
        await cache.get((request, 0, 100), load)
    await cache.get(("a", 0, 100), load)  # used again: "b" is now the least recently used
    await cache.get(("d", 0, 100), load)
    assert set(cache.answers) == {("a", 0, 100), ("c", 0, 100), ("d", 0, 100)}
    assert cache.bytes == sum(answer.size for answer in cache.answers.values()) <= cache.max_bytes


async def test_an_answer_larger_than_the_whole_cache_is_served_but_not_kept(clock):
    cache = cache_with(clock, max_bytes=ENTRY_OVERHEAD_BYTES + 10)

    async def large() -> bytes:
        return b"x" * 100

    assert await cache.get(KEY, large) == b"x" * 100
    assert not cache.answers and cache.bytes == 0


async def test_answers_too_old_to_be_served_are_dropped(clock):
    cache, load = cache_with(clock), Loader(clock)
    for request in ("a", "b", "c"):
        await cache.get((request, 0, 100), load)
    clock.now += 2.0
    await cache.get(("d", 0, 100), load)
    assert set(cache.answers) == {("d", 0, 100)}
    assert cache.bytes == cache.answers[("d", 0, 100)].size


async def test_pages_and_requests_are_cached_apart_and_forgotten_per_request(clock):
    cache, load = cache_with(clock, ttl=1.5), Loader(clock)
    await cache.get(("a", 0, 100), load)
    await cache.get(("a", 100, 100), load)
    await cache.get(("b", 0, 100), load)
    assert load.calls == 3
    cache.forget("a")
    await cache.get(("a", 0, 100), load)
    await cache.get(("b", 0, 100), load)
    assert load.calls == 4


async def test_a_read_in_flight_when_its_request_changes_is_not_kept(clock):
    cache, load = cache_with(clock), Loader(clock)
    load.gate.clear()
    before_change = asyncio.ensure_future(cache.get(KEY, load))
    assert await still_waiting(before_change)
    cache.forget("r")
    load.gate.set()
    assert await before_change == b"answer 1"
    assert await cache.get(KEY, load) == b"answer 2"


async def test_a_ttl_of_zero_reads_every_time(clock):
    cache, load = cache_with(clock, ttl=0), Loader(clock)
    await cache.get(KEY, load)
    await cache.get(KEY, load)
    assert load.calls == 2


async def test_a_seeded_answer_is_served_without_a_read_until_it_is_stale(clock):
    cache, load = cache_with(clock, ttl=0.5), Loader(clock)
    cache.put(KEY, b"seeded")
    assert await cache.get(KEY, load) == b"seeded"
    assert load.calls == 0
    clock.now += 2.0
    assert await cache.get(KEY, load) == b"answer 1"
