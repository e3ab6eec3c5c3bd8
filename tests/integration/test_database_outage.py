"""A database that stops answering (CONTRACT §4): 503 with Retry-After within 10 s, never a hang,
and nothing accepted is lost once it answers again.

The servers are paused with SIGSTOP, as a machine that stops answering without closing its
connections would be. It runs on a stack of its own so the pause disturbs no other test.
"""

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from tests.support.client import accepted_id, product_csv, upload, wait_final
from tests.support.stack import Stack, start_stack

ANSWER_WITHIN_SECONDS = 10


@pytest.fixture(scope="module")
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with start_stack(tmp_path_factory.mktemp("outage")) as stack:
        yield stack


@contextmanager
def paused(pid: int) -> Iterator[None]:
    assert pid, "the program is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(response: httpx.Response, seconds: float) -> None:
    assert response.status_code == 503, response.text
    assert seconds < ANSWER_WITHIN_SECONDS, seconds
    assert response.headers["content-type"] == "application/json"
    assert "not answering" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0


def test_while_mongodb_does_not_answer_routes_answer_503_and_work_resumes_after(outage_stack, image_server):
    stack = outage_stack
    urls = [f"{image_server.url}/delay/2/photo.jpg", image_server.image("tiny.jpg")]
    before = accepted_id(stack.api, product_csv([(1, "Before", urls)]))
    csv_text = product_csv([(1, "During", [image_server.image("tiny.jpg")])])

    with paused(stack.pid_of("mongodb")):
        uploaded, upload_seconds = timed(lambda: upload(stack.api, csv_text))
        # By now the answer cached at upload is older than 2 s: the status must read MongoDB.
        status, status_seconds = timed(lambda: httpx.get(f"{stack.api}/status/{before}", timeout=30))
        health = httpx.get(f"{stack.base_url}/healthz", timeout=5)
    print(f"\n503 with MongoDB paused: upload {upload_seconds:.2f} s, status {status_seconds:.2f} s")

    assert_unavailable(uploaded, upload_seconds)
    assert_unavailable(status, status_seconds)
    assert health.status_code == 200
    assert wait_final(stack.api, before, timeout=120)["status"] == "completed"


def test_while_redis_does_not_answer_an_upload_is_kept_and_processed_after(outage_stack, image_server):
    stack = outage_stack
    csv_text = product_csv([(1, "During", [image_server.image("tiny.jpg")])])

    with paused(stack.pid_of("redis")):
        uploaded, seconds = timed(lambda: upload(stack.api, csv_text))
    print(f"\nupload with Redis paused: {uploaded.status_code} in {seconds:.2f} s")

    # MongoDB answers, so the request is stored and accepted; the sweeper enqueues it later.
    assert uploaded.status_code == 202, uploaded.text
    assert seconds < ANSWER_WITHIN_SECONDS, seconds
    assert wait_final(stack.api, uploaded.json()["request_id"], timeout=120)["status"] == "completed"
