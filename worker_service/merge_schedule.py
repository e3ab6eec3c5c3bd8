"""When finished products are folded into their request document: at most once a merge interval,
however many finish, and further apart the more a merge costs.

Every merge rewrites the request document, whose size grows with the request. So the first product
to finish within an interval asks for a merge at the interval's end (a Redis key set only if absent
says who is first), and a merge that took long holds the next one back 25 times as long as it took:
merging then costs under about 4 % of the database's time for a request of any size. A merge
scheduled in vain costs a read; one never scheduled (Redis away) is found by the sweeper.
"""

import contextlib
import logging
from collections.abc import Callable

import redis

log = logging.getLogger("worker.merges")

MERGE_COST_FACTOR = 25


def merge_key(request_id: str) -> str:
    return f"merge-scheduled:{request_id}"


def ask_for_merge(client: redis.Redis, request_id: str, interval: float, send: Callable[[float], object]) -> None:
    """Send a merge (`send(countdown)`) within the interval, once however many products finish in it."""
    try:
        first = client.set(merge_key(request_id), 1, nx=True, px=int(interval * 1000))
    except redis.RedisError:
        log.warning("could not schedule a merge of %s; the sweeper will", request_id, exc_info=True)
        return
    if first:
        send(interval)


def hold_next_merge(client: redis.Redis, request_id: str, interval: float, took: float) -> None:
    """Hold the next merge back in proportion to what this one cost."""
    hold = max(interval, MERGE_COST_FACTOR * took)
    with contextlib.suppress(redis.RedisError):  # then the next merge simply comes sooner
        client.set(merge_key(request_id), 1, px=int(hold * 1000))
