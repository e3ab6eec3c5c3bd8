"""One webhook attempt against receivers that misbehave on purpose: it ends at its deadline, reads little."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator

import pytest

from shared.settings import Settings
from tests.support.scripted_server import (
    ScriptedServer,
    endless_chunked_body,
    flood,
    headers_a_byte_at_a_time,
    reply,
    stall_after,
)
from worker_service import webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SETTINGS = Settings.load(env_file=None, allow_private_networks=True, webhook_timeout_seconds=1.0, webhook_secret=SECRET)


@pytest.fixture
def receiver() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


def timed_send(url: str, settings: Settings = SETTINGS) -> tuple[webhooks.DeliveryResult, float]:
    started = time.monotonic()
    result = webhooks.send(url, "msg_1", '{"type":"request.completed"}', settings.webhooks, settings.network)
    return result, time.monotonic() - started


def test_a_2xx_answer_is_a_delivery(receiver: ScriptedServer) -> None:
    result, _ = timed_send(receiver.route("/hook", reply(204, b"")))
    assert result == webhooks.DeliveryResult(True, 204, None)
    assert receiver.bodies == [b'{"type":"request.completed"}']
    assert receiver.request_headers[0]["webhook-id"] == "msg_1"
    assert receiver.request_headers[0]["webhook-signature"].startswith("v1,")


def test_another_status_is_not(receiver: ScriptedServer) -> None:
    result, _ = timed_send(receiver.route("/hook", reply(500, b"oops")))
    assert result == webhooks.DeliveryResult(False, 500, "HTTP 500")


def test_headers_sent_a_byte_at_a_time_end_the_attempt_at_its_deadline(receiver: ScriptedServer) -> None:
    result, took = timed_send(receiver.route("/hook", headers_a_byte_at_a_time(interval=0.02)))
    assert result == webhooks.DeliveryResult(False, None, "no answer within 1 s")
    assert 1.0 <= took < 1.4


def test_a_body_that_never_ends_ends_the_attempt_at_its_deadline(receiver: ScriptedServer) -> None:
    result, took = timed_send(receiver.route("/hook", endless_chunked_body(interval=0.01)))
    assert result == webhooks.DeliveryResult(False, None, "no answer within 1 s")
    assert 1.0 <= took < 1.4


def test_a_receiver_that_never_answers_ends_the_attempt_at_its_deadline(receiver: ScriptedServer) -> None:
    result, took = timed_send(receiver.route("/hook", stall_after(b"", seconds=5)))
    assert not result.delivered
    assert 1.0 <= took < 1.4


def test_at_most_64_kib_of_an_answer_is_read(receiver: ScriptedServer) -> None:
    """An answer whose rest never comes: its first 64 KiB are enough, the rest is never waited for."""
    endless = receiver.route("/hook", stall_after(b"x" * webhooks.MAX_ANSWER_BYTES, seconds=5))
    result, took = timed_send(endless)
    assert result == webhooks.DeliveryResult(True, 200, None)
    assert took < 0.5


def test_an_answer_of_many_megabytes_is_not_read_whole(receiver: ScriptedServer) -> None:
    tracemalloc.start()
    try:
        result, _ = timed_send(receiver.route("/hook", flood(50 * 1024 * 1024)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.delivered
    assert peak < 5 * 1024 * 1024


def test_a_blocked_receiver_is_refused_without_connecting(receiver: ScriptedServer) -> None:
    url = receiver.route("/hook", reply(200))
    result, _ = timed_send(url, Settings.load(env_file=None, allow_private_networks=False, webhook_timeout_seconds=1.0))
    assert not result.delivered
    assert receiver.hits("/hook") == 0
