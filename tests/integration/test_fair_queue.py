"""The fair queue's turns against a real Redis: between owners, then within an owner between its requests."""

from collections.abc import Iterator

import pytest
import redis

from shared.fair_queue import FairQueue, waiting_list
from shared.queue import IMAGES_QUEUE
from tests.support.redis_server import redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    with redis_server(tmp_path_factory.mktemp("redis")) as client:
        yield client


@pytest.fixture
def client(server: redis.Redis) -> redis.Redis:
    server.flushall()
    return server


def park(client: redis.Redis, request_id: str, count: int) -> None:
    """As Celery publishes: LPUSH, so the oldest is on the right."""
    for index in range(count):
        client.lpush(waiting_list(request_id), f"{request_id}#{index}")


def released(client: redis.Redis) -> list[str]:
    """The workers' queue in the order the workers take it (from the right)."""
    return [item.decode() for item in reversed(client.lrange(IMAGES_QUEUE, 0, -1))]


def test_owners_take_turns_and_an_owners_requests_take_turns_within_them(client):
    queue = FairQueue(client, ahead=8)
    for request_id in ("a1", "a2", "a3"):
        park(client, request_id, 2)
        queue.register("owner-a", request_id)
    park(client, "b1", 4)
    queue.register("owner-b", "b1")

    assert queue.release() == 8
    assert released(client) == ["a1#0", "b1#0", "a2#0", "b1#1", "a3#0", "b1#2", "a1#1", "b1#3"]


def test_only_as_many_as_asked_wait_ahead(client):
    queue = FairQueue(client, ahead=2)
    park(client, "r1", 5)
    queue.register(None, "r1")
    assert queue.release() == 2
    assert queue.release() == 0, "two wait already"
    client.rpop(IMAGES_QUEUE)  # a worker takes one
    assert queue.release() == 1
    assert queue.waiting("r1") == 2


def test_a_request_whose_products_are_all_released_leaves_the_turns(client):
    queue = FairQueue(client, ahead=10)
    park(client, "r1", 1)
    queue.register("owner", "r1")
    queue.register("owner", "r1")  # twice: one turn
    assert queue.release() == 1
    assert queue.release() == 0
    assert client.llen("fair:owners") == 0
    assert not client.exists("fair:owner:owner")


def test_a_withdrawn_request_releases_nothing_more(client):
    queue = FairQueue(client, ahead=10)
    park(client, "r1", 3)
    park(client, "r2", 1)
    queue.register("owner", "r1")
    queue.register("owner", "r2")
    assert queue.withdraw("owner", "r1") == 3
    assert queue.release() == 1
    assert released(client) == ["r2#0"]
