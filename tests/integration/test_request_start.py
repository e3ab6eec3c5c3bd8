"""A large request's products start while the rest of its product tasks are still being sent
(worker_service/tasks.py, `turns_once_some_wait`)."""

import time

import httpx
import redis

from shared.fair_queue import OWNER_PREFIX, waiting_list
from tests.support.client import accepted_id, product_csv, wait_final

PRODUCTS = 1500  # about 1.2 s of sending


def request_has_turns(client: redis.Redis, request_id: str) -> bool:
    return any(request_id.encode() in client.lrange(ring, 0, -1) for ring in client.keys(f"{OWNER_PREFIX}*"))


def test_a_large_request_gets_its_turns_long_before_its_last_product_task_is_sent(stack, image_server):
    rows = [(i, f"P{i}", [f"{image_server.url}/status/404"]) for i in range(1, PRODUCTS + 1)]
    client = redis.Redis.from_url(stack.environment()["REDIS_URL"])
    request_id = accepted_id(stack.api, product_csv(rows))
    try:
        waiting_at_its_first_turn = None
        deadline = time.monotonic() + 60
        while waiting_at_its_first_turn is None and time.monotonic() < deadline:
            waiting = client.llen(waiting_list(request_id))
            if request_has_turns(client, request_id):
                waiting_at_its_first_turn = waiting
            time.sleep(0.005)
    finally:
        httpx.post(f"{stack.api}/requests/{request_id}/cancel", timeout=30).raise_for_status()
        assert wait_final(stack.api, request_id)["status"] == "cancelled"

    assert waiting_at_its_first_turn is not None, "the request never had a turn"
    assert waiting_at_its_first_turn < PRODUCTS // 2
