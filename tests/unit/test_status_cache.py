"""The status cache: one read serves every poller for its lifetime."""

import asyncio

import pytest

from api_service.status_cache import StatusCache


class CountingLoader:
    def __init__(self, delay: float = 0.05) -> None:
        self.calls = 0
        self.delay = delay

    async def __call__(self) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return f"answer {self.calls}".encode()


async def test_concurrent_polls_share_one_read():
    cache, load = StatusCache(ttl=1.0), CountingLoader()
    answers = await asyncio.gather(*(cache.get(("r", 0, 100), load) for _ in range(50)))
    assert load.calls == 1
    assert set(answers) == {b"answer 1"}


async def test_a_stale_answer_is_served_at_once_while_one_read_refreshes_it():
    cache, load = StatusCache(ttl=0.05), CountingLoader(delay=0)
    assert await cache.get(("r", 0, 100), load) == b"answer 1"
    load.delay = 0.2  # the database is busy now
    await asyncio.sleep(0.08)
    stale = await asyncio.wait_for(asyncio.gather(*(cache.get(("r", 0, 100), load) for _ in range(20))), 0.05)
    assert set(stale) == {b"answer 1"}
    await asyncio.sleep(0.3)
    assert await cache.get(("r", 0, 100), load) == b"answer 2"
    assert load.calls == 2


async def test_an_expensive_read_is_repeated_less_often():
    cache, load = StatusCache(ttl=0.01), CountingLoader(delay=0.02)
    await cache.get(("r", 0, 100), load)
    await asyncio.sleep(0.1)  # ten times the ttl, but less than 25 times the read
    await cache.get(("r", 0, 100), load)
    assert load.calls == 1


async def test_pages_and_requests_are_cached_apart_and_forgotten_per_request():
    cache, load = StatusCache(ttl=10), CountingLoader(delay=0)
    await cache.get(("a", 0, 100), load)
    await cache.get(("a", 100, 100), load)
    await cache.get(("b", 0, 100), load)
    assert load.calls == 3
    cache.forget("a")
    await cache.get(("a", 0, 100), load)
    await cache.get(("b", 0, 100), load)
    assert load.calls == 4


async def test_a_failed_read_is_not_cached():
    cache = StatusCache(ttl=10)

    async def failing() -> bytes:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get(("r", 0, 100), failing)
    assert await cache.get(("r", 0, 100), CountingLoader(delay=0)) == b"answer 1"


async def test_a_ttl_of_zero_reads_every_time():
    cache, load = StatusCache(ttl=0), CountingLoader(delay=0)
    await cache.get(("r", 0, 100), load)
    await cache.get(("r", 0, 100), load)
    assert load.calls == 2


async def test_a_seeded_answer_is_served_without_a_read():
    cache, load = StatusCache(ttl=10), CountingLoader(delay=0)
    cache.put(("r", 0, 100), b"seeded")
    assert await cache.get(("r", 0, 100), load) == b"seeded"
    assert load.calls == 0
