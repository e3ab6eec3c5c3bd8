"""The processing log: one entry per image, with what became of it and what it cost."""

import io
import uuid

import httpx
from PIL import Image

from shared.url_rules import redact_credentials
from tests.support.client import accepted_id, product_csv, wait_final
from tests.support.stack import wait_until


def processing_log(api: str, request_id: str, **params) -> dict:
    response = httpx.get(f"{api}/status/{request_id}/images", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_each_image_is_logged_with_its_outcome_sizes_and_timings(stack, image_server):
    missing = f"{image_server.url}/status/404"
    photo, png = image_server.image("photo.jpg"), image_server.image("photo.png")
    with_password = png.replace("://", "://shop:s3cret@")
    request_id = accepted_id(stack.api, product_csv([(1, "Mixed", [photo, missing]), (2, "Png", [with_password])]))
    progress = wait_final(stack.api, request_id)["progress"]

    log = processing_log(stack.api, request_id)
    assert {key: log[key] for key in ("request_id", "images_total", "offset", "limit")} == {
        "request_id": request_id, "images_total": 3, "offset": 0, "limit": 100,
    }  # fmt: skip
    stored_jpeg, failed, stored_png = log["images"]
    assert [(e["serial_number"], e["position"], e["input_url"]) for e in log["images"]] == [
        (1, 0, photo), (1, 1, missing), (2, 0, redact_credentials(with_password)),
    ]  # fmt: skip
    for entry, name, fmt in ((stored_jpeg, "photo.jpg", "JPEG"), (stored_png, "photo.png", "PNG")):
        source = image_server.library[name][0]
        stored = httpx.get(entry["output_url"]).content
        assert entry["status"] == "completed" and entry["error"] is None
        assert (entry["format"], entry["width"], entry["height"]) == (fmt, *Image.open(io.BytesIO(source)).size)
        assert (entry["bytes_in"], entry["bytes_out"]) == (len(source), len(stored))
        assert entry["attempts"] == 1
        assert min(entry["download_ms"], entry["compress_ms"], entry["store_ms"]) > 0
        assert entry["finished_at"] is not None
    assert failed["status"] == "failed" and failed["error"] == "HTTP 404"
    assert failed["attempts"] == 1 and failed["download_ms"] > 0 and failed["finished_at"] is not None
    assert [failed[key] for key in ("output_url", "format", "bytes_in", "bytes_out", "compress_ms")] == [None] * 5

    assert "s3cret" not in redact_credentials(with_password)
    assert progress["bytes_in"] == stored_jpeg["bytes_in"] + stored_png["bytes_in"]
    assert progress["bytes_out"] == stored_jpeg["bytes_out"] + stored_png["bytes_out"]

    page = processing_log(stack.api, request_id, offset=1, limit=1)
    assert [(e["serial_number"], e["position"]) for e in page["images"]] == [(1, 1)]
    assert processing_log(stack.api, request_id, offset=3)["images"] == []


def test_unfinished_images_are_pending_until_their_product_is_claimed_then_processing(stack, image_server):
    slow = [(serial, f"Slow{serial}", [f"{image_server.url}/delay/2/photo.jpg"]) for serial in range(1, 4)]
    request_id = accepted_id(stack.api, product_csv(slow))
    first = processing_log(stack.api, request_id)["images"]
    assert {entry["status"] for entry in first} <= {"pending", "processing"}
    assert all(entry["finished_at"] is None and entry["output_url"] is None for entry in first)
    wait_until(
        lambda: "processing" in {e["status"] for e in processing_log(stack.api, request_id)["images"]},
        30,
        message="a claimed product's images to show as processing",
    )
    wait_final(stack.api, request_id)
    assert {e["status"] for e in processing_log(stack.api, request_id)["images"]} == {"completed"}


def test_an_unknown_request_has_no_processing_log(stack):
    response = httpx.get(f"{stack.api}/status/{uuid.uuid4()}/images")
    assert response.status_code == 404
    assert response.json() == {"detail": "request not found"}
