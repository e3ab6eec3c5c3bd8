"""Celery's Redis transport (kombu's), less a new Redis client for every command it sends.

Outside its event loop (acknowledging a message, publishing one, keeping the unacknowledged
ones) kombu's Redis channel makes a new `redis.Redis` for each command: redis-py builds its
table of response callbacks anew each time, about 0.1 ms of CPU, several times a task. In a
py-spy profile of the image worker during a re-import, that was a tenth of its CPU. A client is
safe to share between threads (each command takes a connection from the pool), so each channel
keeps one, and makes it again if kombu replaces the channel's pool (after a connection error).

Used by naming it as the broker's transport (`broker_transport`, shared/queue.py); the broker URL
stays `redis://`.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    _kept_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        make_client = super()._create_client  # type: ignore[misc]  # kombu's stubs leave it out
        if asynchronous:  # the event loop's own (BRPOP), made once by kombu
            return make_client(asynchronous=True)
        client = self._kept_client
        if client is None or client.connection_pool is not self.pool:
            client = self._kept_client = make_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
