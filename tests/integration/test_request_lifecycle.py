"""A request's life at its caller's wish (CONTRACT §4): list, cancel, retry, delete; on a stack of its
own with two API keys, two product threads and the re-import memory on."""

import csv
import io
import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api_service.auth import owner_digest
from shared.models import utcnow
from shared.store import requests
from shared.store.operations import SyncStore
from tests.support.client import bearer, product_csv, wait_final
from tests.support.command import image_service
from tests.support.stack import Stack, start_stack, wait_until

KEY_A, KEY_B = "lifecycle-key-a", "lifecycle-key-b"


@pytest.fixture(scope="module")
def life_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {
        "API_KEYS": f"{KEY_A},{KEY_B}",
        "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
        "WORKER_CONCURRENCY": "2",
        "PRODUCTS_QUEUED_AHEAD": "1",
        "REUSE_OUTPUTS": "true",
        # Long enough for an image still downloading past a cancel's grace (5 s).
        "DOWNLOAD_TOTAL_TIMEOUT_SECONDS": "12",
    }
    with start_stack(tmp_path_factory.mktemp("lifecycle-stack"), extra) as running:
        yield running


def client(stack: Stack, key: str = KEY_A) -> httpx.Client:
    return httpx.Client(base_url=stack.api, headers=bearer(key), timeout=60)


def submit(stack: Stack, urls_by_product: list[list[str]], key: str = KEY_A, webhook_url: str | None = None) -> str:
    rows = [(serial, f"P{serial}", urls) for serial, urls in enumerate(urls_by_product, start=1)]
    data = {"webhook_url": webhook_url} if webhook_url else None
    with client(stack, key) as api:
        response = api.post("/upload", files={"file": ("p.csv", product_csv(rows).encode(), "text/csv")}, data=data)
    assert response.status_code == 202, response.text
    return response.json()["request_id"]


def final(stack: Stack, request_id: str, key: str = KEY_A, timeout: float = 60) -> dict:
    return wait_final(stack.api, request_id, timeout=timeout, headers=bearer(key))


def token() -> str:
    return uuid.uuid4().hex


def slow(image_server, count: int, seconds: float = 1.0) -> list[list[str]]:
    mark = token()
    return [[f"{image_server.url}/delay/{seconds}/tiny.jpg?{mark}-{i}"] for i in range(count)]


def quick(image_server, count: int, name: str = "tiny.jpg") -> list[list[str]]:
    mark = token()
    return [[f"{image_server.image(name)}?{mark}-{i}"] for i in range(count)]


def under_way(status: dict) -> set[int]:
    return {product["serial_number"] for product in status["products"] if product["status"] == "processing"}


# -- list ----------------------------------------------------------------------------------------


def test_a_caller_lists_its_own_requests_newest_first_a_page_at_a_time(life_stack, image_server):
    mine = [submit(life_stack, quick(image_server, 1)) for _ in range(3)]
    theirs = submit(life_stack, quick(image_server, 1), key=KEY_B)
    for request_id in mine:
        final(life_stack, request_id)

    with client(life_stack) as api:
        first = api.get("/requests", params={"limit": 2}).json()
        assert [item["request_id"] for item in first["requests"]] == mine[:0:-1]
        assert first["next_cursor"]
        second = api.get("/requests", params={"limit": 2, "cursor": first["next_cursor"]}).json()
        listed = [item["request_id"] for item in first["requests"] + second["requests"]]
        assert listed[:3] == mine[::-1]
        assert theirs not in listed
        item = first["requests"][0]
        assert (item["status"], item["products"], item["images"]) == ("completed", 1, 1)
        assert item["progress"]["percentage"] == 100.0 and item["completed_at"]
        completed = api.get("/requests", params={"status": "completed", "limit": 500}).json()["requests"]
        assert {item["status"] for item in completed} == {"completed"}
        assert api.get("/requests", params={"cursor": "not a cursor"}).status_code == 400
        assert api.get("/requests", params={"limit": 501}).status_code == 422


# -- cancel --------------------------------------------------------------------------------------


def test_a_cancelled_request_starts_nothing_more_and_is_final_within_ten_seconds(
    life_stack, image_server, webhook_receiver
):
    hook = f"cancel-{token()}"
    # Three seconds an image: those under way at the cancel are still under way a sweep later.
    products = slow(image_server, 20, 3.0)
    request_id = submit(life_stack, products, webhook_url=webhook_receiver.hook(hook))
    with client(life_stack) as api:
        wait_until(lambda: under_way(api.get(f"/status/{request_id}").json()), 15, message="a product under way")
        asked_at = time.monotonic()
        answer = api.post(f"/requests/{request_id}/cancel")
        assert answer.status_code == 202, answer.text
        assert answer.json()["request_id"] == request_id
        held = under_way(answer.json())
        body = final(life_stack, request_id, timeout=15)
        assert time.monotonic() - asked_at < 10
        assert body["status"] == "cancelled" and body["completed_at"]
        ended = {p["serial_number"]: p["status"] for p in body["products"]}
        assert held and {ended[serial] for serial in held} == {"completed"}, "images under way were cut short"
        progress = body["progress"]
        assert progress["percentage"] == 100.0
        assert progress["images_done"] == progress["images_total"] == 20
        cancelled = [e for product in body["products"] for e in product["errors"] if e["message"] == "cancelled"]
        assert len(cancelled) >= 10, "most products were never started"
        assert progress["images_failed"] == len(cancelled)
        started = sum(image_server.hits[urls[0].split("?")[0].removeprefix(image_server.url)] > 0 for urls in products)
        assert started >= 1
        # Nothing more starts after the cancel.
        hits = dict(image_server.hits)
        time.sleep(2)
        assert dict(image_server.hits) == hits
        again = api.post(f"/requests/{request_id}/cancel")
        assert again.status_code == 409 and "cancelled" in again.json()["detail"]
        rows = list(csv.reader(io.StringIO(api.get(f"/download/{request_id}").text)))
        assert len(rows) == 21
        log = api.get(f"/status/{request_id}/images").json()["images"]
        assert {entry["status"] for entry in log} <= {"completed", "failed"}
    delivery = wait_until(lambda: webhook_receiver.received(hook), 15, message="the webhook")[0]
    assert json.loads(delivery.body)["data"]["status"] == "cancelled"


def test_a_cancel_whose_task_was_lost_is_taken_up_by_the_sweeper_and_starts_nothing_more(life_stack, image_server):
    products = slow(image_server, 30)
    request_id = submit(life_stack, products)
    with client(life_stack) as api:
        wait_until(lambda: under_way(api.get(f"/status/{request_id}").json()), 15, message="a product under way")
    # The API's write without its task, as when the API is lost between the two.
    with life_stack.mongo() as mongo:
        asked = SyncStore(mongo["image_service"]).run(requests.ask_to_cancel(request_id, owner_digest(KEY_A), utcnow()))
    assert asked is not None
    body = final(life_stack, request_id, timeout=30)
    assert body["status"] == "cancelled"
    assert sum(e["message"] == "cancelled" for product in body["products"] for e in product["errors"]) >= 10
    hits = dict(image_server.hits)
    time.sleep(3)
    assert dict(image_server.hits) == hits, "products of the cancelled request still started"


def test_cancelling_a_finished_or_unknown_request_is_refused(life_stack, image_server):
    request_id = submit(life_stack, quick(image_server, 1))
    final(life_stack, request_id)
    with client(life_stack) as api:
        assert api.post(f"/requests/{request_id}/cancel").status_code == 409
        assert api.post(f"/requests/{uuid.uuid4()}/cancel").status_code == 404
    with client(life_stack, KEY_B) as other:
        assert other.post(f"/requests/{request_id}/cancel").status_code == 404


# -- retry ---------------------------------------------------------------------------------------


def test_a_retry_processes_only_the_failed_images_again_with_a_new_webhook(life_stack, image_server, webhook_receiver):
    hook, gate = f"retry-{token()}", token()
    good = f"{image_server.image('photo.jpg')}?{gate}"
    gated = f"{image_server.url}/gated/{gate}/photo.png"
    request_id = submit(life_stack, [[good, gated], [f"{image_server.image('tiny.jpg')}?{gate}"]],
                        webhook_url=webhook_receiver.hook(hook))  # fmt: skip
    first = final(life_stack, request_id)
    assert first["status"] == "completed_with_errors"
    kept = first["products"][0]["output_image_urls"][0]
    first_delivery = wait_until(lambda: webhook_receiver.received(hook), 15, message="the first webhook")[0]
    good_hits = image_server.hits["/img/photo.jpg"]

    image_server.open_gates.add(gate)
    with client(life_stack) as api:
        answer = api.post(f"/requests/{request_id}/retry")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] in ("pending", "processing")
        again = final(life_stack, request_id)
        assert again["status"] == "completed"
        assert again["progress"] == {**first["progress"], "images_failed": 0, "bytes_in": again["progress"]["bytes_in"],
                                     "bytes_out": again["progress"]["bytes_out"]}  # fmt: skip
        assert again["products"][0]["output_image_urls"][0] == kept
        assert all(again["products"][0]["output_image_urls"])
        assert image_server.hits["/img/photo.jpg"] == good_hits, "a stored image was downloaded again"
        rows = list(csv.DictReader(io.StringIO(api.get(f"/download/{request_id}").text)))
        assert all(url for row in rows for url in row["Output Image Urls"].split(","))
        assert api.post(f"/requests/{request_id}/retry").status_code == 409
    deliveries = wait_until(lambda: webhook_receiver.received(hook)[1:], 15, message="the second webhook")
    assert json.loads(deliveries[0].body)["data"]["status"] == "completed"
    assert deliveries[0].headers["webhook-id"] != first_delivery.headers["webhook-id"]


def test_a_cancelled_request_is_retried_to_the_end(life_stack, image_server):
    request_id = submit(life_stack, slow(image_server, 8, 0.5))
    time.sleep(1.0)
    with client(life_stack) as api:
        assert api.post(f"/requests/{request_id}/cancel").status_code == 202
        assert final(life_stack, request_id, timeout=15)["status"] == "cancelled"
        assert api.post(f"/requests/{request_id}/retry").status_code == 202
        body = final(life_stack, request_id)
    assert body["status"] == "completed"
    assert body["progress"]["images_failed"] == 0 and body["progress"]["images_done"] == 8


def test_an_unfinished_request_is_not_retried(life_stack, image_server):
    request_id = submit(life_stack, slow(image_server, 4, 1.0))
    with client(life_stack) as api:
        assert api.post(f"/requests/{request_id}/retry").status_code == 409
        assert api.post(f"/requests/{uuid.uuid4()}/retry").status_code == 404
    final(life_stack, request_id)


# -- delete --------------------------------------------------------------------------------------


def test_a_deleted_request_is_gone_with_its_images(life_stack, image_server):
    request_id = submit(life_stack, quick(image_server, 2, "photo.jpg"))
    body = final(life_stack, request_id)
    outputs = [url for product in body["products"] for url in product["output_image_urls"]]
    assert all(httpx.get(url).status_code == 200 for url in outputs)
    with client(life_stack) as api:
        assert api.delete(f"/requests/{request_id}").status_code == 204
        for path in (f"/status/{request_id}", f"/status/{request_id}/images", f"/download/{request_id}"):
            assert api.get(path).status_code == 404, path
        assert api.post(f"/requests/{request_id}/retry").status_code == 404
        assert api.delete(f"/requests/{request_id}").status_code == 404
        assert request_id not in [
            item["request_id"] for item in api.get("/requests", params={"limit": 500}).json()["requests"]
        ]
    assert all(httpx.get(url).status_code == 404 for url in outputs)
    assert not (life_stack.data_dir / "media" / request_id).exists()
    with life_stack.mongo() as mongo:
        database = mongo["image_service"]
        assert database["requests"].count_documents({"_id": request_id}) == 0
        assert database["product_claims"].count_documents({"request_id": request_id}) == 0


def test_images_still_under_way_when_their_cancelled_request_is_deleted_are_not_left_behind(life_stack, image_server):
    # Under way for 10 s: the request is cancelled (its grace is 5 s) and deleted before they are stored.
    request_id = submit(life_stack, slow(image_server, 2, 10.0))
    with client(life_stack) as api:
        wait_until(lambda: under_way(api.get(f"/status/{request_id}").json()), 15, message="a product under way")
        assert api.post(f"/requests/{request_id}/cancel").status_code == 202
        assert final(life_stack, request_id, timeout=15)["status"] == "cancelled"
        assert api.delete(f"/requests/{request_id}").status_code == 204
    media = life_stack.data_dir / "media" / request_id
    # Past the images' end: each was stored, found its request deleted and removed what it stored.
    time.sleep(5)
    assert not any(media.rglob("*.*")), sorted(media.rglob("*"))
    assert httpx.get(f"{life_stack.base_url}/media/{request_id}/1-0.jpg").status_code == 404


def test_an_unfinished_request_is_not_deleted(life_stack, image_server):
    request_id = submit(life_stack, slow(image_server, 4, 1.0))
    with client(life_stack) as api:
        refused = api.delete(f"/requests/{request_id}")
        assert refused.status_code == 409 and "cancel it" in refused.json()["detail"]
    final(life_stack, request_id)


def test_after_a_deletion_the_memory_still_reuses_what_it_remembered(life_stack, image_server):
    mark = token()
    urls = [[f"{image_server.url}/validated/{name}?{mark}"] for name in ("photo.jpg", "photo.webp")]
    first = submit(life_stack, urls)
    final(life_stack, first)
    with client(life_stack) as api:
        assert api.delete(f"/requests/{first}").status_code == 204
        second = submit(life_stack, urls)
        body = final(life_stack, second)
        log = api.get(f"/status/{second}/images").json()["images"]
    assert [entry["reuse"] for entry in log] == ["not_modified", "not_modified"]
    outputs = [url for product in body["products"] for url in product["output_image_urls"]]
    assert all(httpx.get(url).status_code == 200 and httpx.get(url).content for url in outputs)


# -- retention -----------------------------------------------------------------------------------


def test_requests_past_the_retention_are_deleted_by_the_sweeper(tmp_path, image_server):
    # 0.00005 days: four seconds and a bit.
    with start_stack(tmp_path, {"RETENTION_DAYS": "0.00005", "API_KEYS": KEY_A}) as stack:
        request_id = submit(stack, quick(image_server, 1, "photo.jpg"))
        body = final(stack, request_id)
        [output] = body["products"][0]["output_image_urls"]
        with client(stack) as api:
            wait_until(lambda: api.get(f"/status/{request_id}").status_code == 404, 20, message="the retention")
        # Within a sweep interval (a second here) of its documents answering 404, its images are gone too.
        wait_until(lambda: httpx.get(output).status_code == 404, 3, message="its images gone")
        assert not (stack.data_dir / "media" / request_id).exists()


# -- the command line ----------------------------------------------------------------------------


def test_the_command_lists_cancels_retries_and_deletes(life_stack, image_server):
    def command(*arguments: str):
        return image_service(*arguments, server=life_stack.base_url, api_key=KEY_A)

    gate = token()
    request_id = submit(life_stack, [[f"{image_server.url}/gated/{gate}/tiny.jpg"]])
    assert final(life_stack, request_id)["status"] == "failed"
    listed = command("list", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith(request_id)]
    assert "failed" in line and "1/1 images, 1 failed" in line

    image_server.open_gates.add(gate)
    retried = command("retry", request_id, "--wait")
    assert retried.returncode == 0, retried.stderr
    assert ": completed: 1 images stored, 0 failed" in retried.stdout

    slow_request = submit(life_stack, slow(image_server, 6, 1.0))
    assert command("cancel", slow_request).returncode == 0
    assert final(life_stack, slow_request, timeout=15)["status"] == "cancelled"
    assert command("status", slow_request).returncode == 5

    assert command("delete", request_id).returncode == 0
    missing = command("status", request_id)
    assert missing.returncode == 2 and "HTTP 404" in missing.stderr
