"""News of finished requests, from the worker that finishes them to every API process.

An API process keeps status answers for a short while (api_service.status_cache); told
that a request is finished, it drops that request's answers, so its pollers see the final
state on their next poll rather than up to the cache's 2 s later. The news is Redis
pub/sub, which keeps nothing: an API process that is not listening at that moment misses
it, and its answers are then simply as old as the cache allows. Nothing depends on it
but how soon the final state is seen.
"""

import asyncio
import logging
from collections.abc import Callable

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger(__name__)

FINISHED_CHANNEL = "requests:finished"
# Between attempts to subscribe again after Redis went away.
RESUBSCRIBE_SECONDS = 1.0


def announce_finished(client: redis.Redis, request_id: str) -> None:
    try:
        client.publish(FINISHED_CHANNEL, request_id)
    except redis.RedisError:
        log.warning("could not announce that %s is finished; its status shows it within 2 s", request_id)


def listening_client(redis_url: str) -> aioredis.Redis:
    # No socket timeout: a quiet channel is no error. A Redis that stops answering leaves the
    # listener waiting, which costs nothing but the news. No retries of redis-py's own: the
    # listener subscribes again itself, which a retried read would not do.
    return aioredis.Redis.from_url(
        redis_url, socket_connect_timeout=2, socket_keepalive=True, retry=Retry(NoBackoff(), 0)
    )


async def listen_for_finished(client: aioredis.Redis, on_finished: Callable[[str], None]) -> None:
    """Call `on_finished` with each finished request's id, for ever; resubscribes when Redis comes back."""
    while True:
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(FINISHED_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "message":
                        on_finished(message["data"].decode())
        except (aioredis.RedisError, OSError) as error:
            log.info("not listening for finished requests (%s); again in %g s", error, RESUBSCRIBE_SECONDS)
        except Exception:  # a message it could not read, say: the listener must outlive it
            log.exception("the listener for finished requests failed; again in %g s", RESUBSCRIBE_SECONDS)
        await asyncio.sleep(RESUBSCRIBE_SECONDS)
