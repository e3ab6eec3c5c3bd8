"""The broker's Redis transport keeps one client per channel, and messages go through it as through kombu's."""

from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from shared.broker_transport import TRANSPORT, Channel
from tests.support.redis_server import redis_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    with redis_server(tmp_path_factory.mktemp("redis")) as client:
        yield client


@pytest.fixture
def connection(server: redis.Redis) -> Iterator[Connection]:
    port = server.connection_pool.connection_kwargs["port"]
    with Connection(f"redis://127.0.0.1:{port}/0", transport=TRANSPORT) as connection:
        yield connection


def test_a_channel_keeps_its_client_until_its_pool_is_replaced(connection: Connection) -> None:
    channel = connection.default_channel
    assert isinstance(channel, Channel)
    client = channel._create_client()
    assert channel._create_client() is client
    channel._pool = None  # as kombu does after a connection error
    assert channel._create_client() is not client
    assert channel._create_client(asynchronous=True) is not channel._create_client()


def test_messages_are_published_delivered_and_acknowledged(connection: Connection, server: redis.Redis) -> None:
    queue = connection.SimpleQueue("transport-test")
    for number in range(3):
        queue.put({"number": number})
    received = []
    for _ in range(3):
        message = queue.get(timeout=5)
        received.append(message.payload["number"])
        message.ack()
    assert received == [0, 1, 2]
    assert server.hlen("unacked") == 0  # every acknowledgement reached Redis
    queue.close()
