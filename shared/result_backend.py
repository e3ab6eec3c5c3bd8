"""Celery's Redis result backend, less the subscriptions to results that nobody reads.

Nothing in the service waits for a task's result, and none is stored: a chord counts its header's
tasks as they end, with a counter of its own in Redis (`on_chord_part_return`). Yet Celery's group,
sending a chord's header, subscribes its sender to every header task's result channel (the barrier
of the `GroupResult` it returns, which we drop), so the control worker held one Redis subscription
for each product it ever fanned out (24 after 24 products, measured with `PUBSUB CHANNELS`), and
Redis kept every channel.
"""

from typing import Any

from celery.backends.redis import RedisBackend


class UnsubscribedRedisBackend(RedisBackend):
    """Counts chords as `RedisBackend` does; never subscribes to a result."""

    def on_task_call(self, producer: Any, task_id: str) -> None:
        """Sending a task does not subscribe to its result."""

    def add_pending_result(self, result: Any, weak: bool = False, start_drainer: bool = True) -> Any:
        """A result is never waited for here: nothing to subscribe to."""
        return result


# Celery takes a backend class with its URL as "module:Class+redis://...".
BACKEND_CLASS = f"{UnsubscribedRedisBackend.__module__}:{UnsubscribedRedisBackend.__name__}"
