"""What survives what (CONTRACT §7): killed workers, poison products, restarts of every part."""

import os
import signal
import time

import pytest

from tests.support.client import accepted_id, product_csv, status, wait_final
from tests.support.stack import start_stack, wait_until

DB = "image_service"


def product_state(stack, request_id: str, index: int = 0) -> dict:
    with stack.mongo() as client:
        document = client[DB]["requests"].find_one({"_id": request_id}, {"products": {"$slice": [index, 1]}})
    return document["products"][0]


def claim_state(stack, request_id: str, index: int = 0) -> dict:
    """The product's claim: attempts, and a lease while a worker holds it."""
    with stack.mongo() as client:
        return client[DB]["product_claims"].find_one({"_id": f"{request_id}:{index}"}) or {}


def being_processed(stack, request_id: str, attempt: int | None = None) -> bool:
    claim = claim_state(stack, request_id)
    held = bool(claim) and not claim["done"] and claim.get("lease_expires_at") is not None
    return held and (attempt is None or claim["attempts"] == attempt)


def kill_image_workers(stack) -> None:
    """SIGKILL the image worker and its pool processes at once, as an OOM killer or a lost machine would."""
    os.killpg(stack.pid_of("worker"), signal.SIGKILL)


def stored_files(stack, request_id: str) -> list[str]:
    folder = stack.data_dir / "media" / request_id
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []


def test_a_worker_killed_mid_product_does_not_lose_the_request(stack, image_server):
    urls = [f"{image_server.url}/delay/3/photo.jpg", image_server.image("photo2.jpg")]
    request_id = accepted_id(
        stack.api, product_csv([(1, "Killed", urls), (2, "Other", [image_server.image("tiny.jpg")])])
    )
    wait_until(lambda: being_processed(stack, request_id), 30, message="the product to start")
    kill_image_workers(stack)
    started = time.monotonic()

    body = wait_final(stack.api, request_id, timeout=120)
    assert time.monotonic() - started < 120
    assert body["status"] == "completed", body["products"]
    assert product_state(stack, request_id)["attempts"] >= 2
    assert stored_files(stack, request_id) == ["1-0.jpg", "1-1.jpg", "2-0.jpg"]


def test_a_product_that_keeps_killing_its_worker_is_given_up(stack, image_server):
    request_id = accepted_id(
        stack.api,
        product_csv(
            [(1, "Poison", [f"{image_server.url}/delay/4/photo.jpg"]), (2, "Fine", [image_server.image("tiny.jpg")])]
        ),
    )
    for attempt in (1, 2, 3):  # PRODUCT_MAX_ATTEMPTS defaults to 3
        wait_until(lambda a=attempt: being_processed(stack, request_id, a), 60, message=f"attempt {attempt}")
        kill_image_workers(stack)
    body = wait_final(stack.api, request_id, timeout=120)
    poison = body["products"][0]
    assert poison["status"] == "failed"
    assert "given up after 3 attempts" in poison["errors"][0]["message"]
    assert body["products"][1]["status"] == "completed"
    assert body["status"] == "completed_with_errors"


def test_work_accepted_while_the_api_is_down_later_is_still_done(stack, image_server):
    request_id = accepted_id(stack.api, product_csv([(1, "A", [f"{image_server.url}/delay/1/photo.jpg"])]))
    stack.supervisorctl("stop", "api")
    try:
        wait_until(lambda: product_state(stack, request_id)["status"] == "completed", 60, message="the product")
    finally:
        stack.supervisorctl("start", "api")
    wait_until(lambda: status_or_none(stack, request_id), 30, message="the API")
    assert wait_final(stack.api, request_id)["status"] == "completed"


def status_or_none(stack, request_id):
    try:
        return status(stack.api, request_id)
    except Exception:  # noqa: BLE001 - the API is still starting
        return None


@pytest.mark.parametrize("server", ["redis", "mongodb"])
def test_a_server_restarted_mid_request_loses_nothing(stack, image_server, server):
    rows = [(i, f"P{i}", [f"{image_server.url}/delay/1/photo.jpg"]) for i in range(1, 9)]
    request_id = accepted_id(stack.api, product_csv(rows))
    wait_until(lambda: status(stack.api, request_id)["progress"]["products_done"] >= 1, 60, message="progress")
    stack.supervisorctl("restart", server)
    body = wait_final(stack.api, request_id, timeout=120)
    assert body["status"] == "completed"
    assert body["progress"]["products_done"] == 8
    assert body["progress"]["images_done"] == 8


def test_the_whole_service_stopped_and_started_with_work_in_flight(tmp_path, image_server):
    rows = [(i, f"P{i}", [f"{image_server.url}/delay/1/photo.jpg"]) for i in range(1, 13)]
    with start_stack(tmp_path, graceful_stop=True) as first:
        request_id = accepted_id(first.api, product_csv(rows))
        wait_until(lambda: status(first.api, request_id)["progress"]["products_done"] >= 1, 60, message="progress")
    with start_stack(tmp_path) as second:
        body = wait_final(second.api, request_id, timeout=120)
        assert body["status"] == "completed"
        assert body["progress"]["products_done"] == 12
        assert len(stored_files(second, request_id)) == 12
