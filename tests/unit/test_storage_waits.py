"""A write the storage refuses is tried again, with backoff, until STORAGE_RETRY_SECONDS are up."""

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from local_stack.processes import free_port
from shared.storage import StorageUnavailable
from worker_service.storage_waits import waiting_for_storage


def nowhere() -> redis.Redis:
    """Redis that is not there: saying the refusal there must not stop the write being tried again."""
    return redis.Redis(port=free_port(), socket_connect_timeout=0.1, retry=Retry(NoBackoff(), 0))


def refusing(times: int) -> tuple[list[int], object]:
    tries: list[int] = []

    def write() -> str:
        tries.append(1)
        if len(tries) <= times:
            raise StorageUnavailable("No space left on device")
        return "stored"

    return tries, write


def test_a_refused_write_is_tried_again_with_a_wait_that_doubles() -> None:
    tries, write = refusing(3)
    waits: list[float] = []
    assert waiting_for_storage(write, 600, nowhere, sleep=waits.append) == "stored"
    assert (len(tries), waits) == (4, [0.5, 1.0, 2.0])


def test_past_the_retry_time_the_refusal_is_the_images_failure() -> None:
    tries, write = refusing(100)
    waits: list[float] = []
    with pytest.raises(StorageUnavailable) as refused:
        waiting_for_storage(write, 0.0, nowhere, sleep=waits.append)
    assert refused.value.message == "storage unavailable"
    assert (len(tries), waits) == (1, [])


def test_other_failures_are_not_waited_for() -> None:
    def write() -> None:
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        waiting_for_storage(write, 600, nowhere, sleep=lambda _: pytest.fail("waited"))
