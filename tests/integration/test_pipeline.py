"""The worker pipeline end to end: downloads, compression, storage, progress, the output CSV."""

import csv
import io

import httpx
import redis
from PIL import Image

from shared.models import FINAL_STATUS_VALUES
from tests.support.client import accepted_id, product_csv, status, wait_final


def fetch_image(url: str) -> Image.Image:
    response = httpx.get(url)
    assert response.status_code == 200, url
    return Image.open(io.BytesIO(response.content))


def test_the_sample_request_completes_with_every_image_compressed(stack, image_server):
    names = ["photo.jpg", "photo2.jpg", "photo.png", "photo.webp", "anim.gif", "photo.bmp"]
    rows = [
        (1, "SKU1", [image_server.image(n) for n in names[:2]]),
        (2, "SKU2", [image_server.image(n) for n in names[2:]]),
    ]
    request_id = accepted_id(stack.api, product_csv(rows))
    body = wait_final(stack.api, request_id)

    assert body["status"] == "completed"
    assert body["completed_at"] is not None
    progress = body["progress"]
    assert progress.pop("bytes_in") >= progress.pop("bytes_out") > 0
    assert progress == {
        "percentage": 100.0,
        "products_total": 2,
        "products_done": 2,
        "images_total": 6,
        "images_done": 6,
        "images_failed": 0,
        "images_reused": 0,
    }
    outputs = [url for product in body["products"] for url in product["output_image_urls"]]
    expected_formats = ["JPEG", "JPEG", "PNG", "WEBP", "GIF", "JPEG"]
    for name, url, fmt in zip(names, outputs, expected_formats, strict=True):
        source = Image.open(io.BytesIO(image_server.library[name][0]))
        output = fetch_image(url)
        assert output.format == fmt, name
        assert output.size == source.size, name
        assert len(httpx.get(url).content) <= len(image_server.library[name][0]), name

    # Quality 50, read off the stored file's quantisation tables.
    reference = io.BytesIO()
    fetch_image(outputs[0]).convert("RGB").save(reference, "JPEG", quality=50)
    assert fetch_image(outputs[0]).quantization == Image.open(reference).quantization

    rows = list(csv.reader(io.StringIO(httpx.get(f"{stack.api}/download/{request_id}").text)))
    assert rows[1] == ["1", "SKU1", ",".join(image_server.image(n) for n in names[:2]), ",".join(outputs[:2])]
    assert rows[2][3] == ",".join(outputs[2:])


def test_each_failure_is_recorded_with_its_reason_and_fails_nothing_else(stack, image_server):
    base = image_server.url
    failing = {
        f"{base}/status/404": "404",
        f"{base}/status/500": "500",
        f"{base}/trickle/x.jpg": "timed out",
        f"{base}/img/page.jpg": "not an image",
        f"{base}/img/bomb.png": "pixel",
        f"{base}/redirect/9/photo.jpg": "redirect",
    }
    good = image_server.image("photo.jpg")
    # The image server serves the whole session: count this test's requests only.
    hits_before = {path: image_server.hits[path] for path in ("/status/500", "/status/404")}
    request_id = accepted_id(
        stack.api, product_csv([(1, "Mixed", [good, *failing]), (2, "Fine", [image_server.image("photo2.jpg")])])
    )
    body = wait_final(stack.api, request_id, timeout=120)

    assert body["status"] == "completed_with_errors"
    mixed, fine = body["products"]
    assert mixed["status"] == "completed"
    assert mixed["output_image_urls"][0] is not None
    assert mixed["output_image_urls"][1:] == [None] * len(failing)
    messages = {error["url"]: error["message"] for error in mixed["errors"]}
    for url, fragment in failing.items():
        assert fragment.lower() in messages[url].lower(), (url, messages[url])
    assert fine["status"] == "completed" and fine["errors"] == []
    assert body["progress"]["images_failed"] == len(failing)
    assert body["progress"]["images_done"] == len(failing) + 2
    # 5xx is retried (3 attempts), 404 is not.
    assert image_server.hits["/status/500"] - hits_before["/status/500"] == 3
    assert image_server.hits["/status/404"] - hits_before["/status/404"] == 1


def test_a_transient_error_is_retried_to_success(stack, image_server):
    url = f"{image_server.url}/flaky/pipeline/2/photo.jpg"
    request_id = accepted_id(stack.api, product_csv([(1, "Flaky", [url])]))
    body = wait_final(stack.api, request_id)
    assert body["status"] == "completed"
    assert image_server.flaky["pipeline"] == 3


def test_a_request_where_every_image_fails_is_failed(stack, image_server):
    request_id = accepted_id(
        stack.api,
        product_csv(
            [(1, "Gone", [f"{image_server.url}/status/410"]), (2, "Gone too", [f"{image_server.url}/status/403"])]
        ),
    )
    body = wait_final(stack.api, request_id)
    assert body["status"] == "failed"
    assert [p["status"] for p in body["products"]] == ["failed", "failed"]
    rows = list(csv.reader(io.StringIO(httpx.get(f"{stack.api}/download/{request_id}").text)))
    assert rows[1][3] == ""


def test_progress_is_visible_while_products_finish(stack, image_server):
    rows = [(i, f"P{i}", [f"{image_server.url}/delay/1/photo.jpg"]) for i in range(1, 11)]
    request_id = accepted_id(stack.api, product_csv(rows))
    seen = set()
    while (body := status(stack.api, request_id))["status"] not in FINAL_STATUS_VALUES:
        seen.add(body["progress"]["products_done"])
    assert body["status"] == "completed"
    assert len(seen - {0, 10}) >= 1, seen


def test_no_task_result_is_stored_or_subscribed_to(stack, image_server):
    # Nobody reads them: the chord counts its products with a counter of its own (shared/result_backend.py).
    rows = [(number, f"SKU{number}", [image_server.image("photo.jpg")]) for number in range(1, 4)]
    request_id = accepted_id(stack.api, product_csv(rows))
    assert wait_final(stack.api, request_id)["status"] == "completed"
    results = redis.Redis.from_url(stack.environment()["REDIS_URL"])
    assert results.pubsub_channels("celery-task-meta-*") == []
    assert list(results.scan_iter("celery-task-meta-*")) == []
