"""The HTTP API of CONTRACT §3–§4 against the running service."""

import csv
import io
import uuid

import httpx
import pytest

from tests.support.client import accepted_id, product_csv, status, upload, wait_final

SAMPLE = """S. No.,Product Name,Input Image Urls
1,SKU1,"{a},{b}"
2,SKU2,{c}
"""


@pytest.fixture()
def sample_csv(image_server) -> str:
    return SAMPLE.format(
        a=image_server.image("photo.jpg"), b=image_server.image("photo2.jpg"), c=image_server.image("photo.png")
    )


def test_upload_answers_at_once_with_absolute_urls(stack, sample_csv):
    response = upload(stack.api, sample_csv)
    assert response.status_code == 202
    body = response.json()
    uuid.UUID(body["request_id"], version=4)
    assert body["status"] == "pending"
    assert body["products"] == 2 and body["images"] == 3
    assert body["status_url"] == f"{stack.api}/status/{body['request_id']}"
    assert body["download_url"] == f"{stack.api}/download/{body['request_id']}"


def test_unknown_ids_are_404(stack):
    unknown = str(uuid.uuid4())
    for path in (f"status/{unknown}", f"download/{unknown}"):
        response = httpx.get(f"{stack.api}/{path}")
        assert response.status_code == 404
        assert response.json() == {"detail": "request not found"}
    response = httpx.post(f"{stack.api}/webhook", json={"request_id": unknown, "webhook_url": "https://x.test/h"})
    assert response.status_code == 404


def test_download_is_409_until_the_request_is_final(stack, image_server):
    request_id = accepted_id(stack.api, product_csv([(1, "Slow", [f"{image_server.url}/delay/4/photo.jpg"])]))
    response = httpx.get(f"{stack.api}/download/{request_id}")
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    wait_final(stack.api, request_id)
    assert httpx.get(f"{stack.api}/download/{request_id}").status_code == 200


def test_same_idempotency_key_and_file_return_the_same_request(stack, sample_csv):
    key = f"key-{uuid.uuid4()}"
    first = upload(stack.api, sample_csv, idempotency_key=key)
    second = upload(stack.api, sample_csv, idempotency_key=key)
    assert first.status_code == second.status_code == 202
    assert first.json()["request_id"] == second.json()["request_id"]
    with stack.mongo() as client:
        assert client["image_service"]["requests"].count_documents({"idempotency_key": key}) == 1


def test_same_idempotency_key_with_another_file_is_refused(stack, sample_csv):
    key = f"key-{uuid.uuid4()}"
    assert upload(stack.api, sample_csv, idempotency_key=key).status_code == 202
    response = upload(stack.api, sample_csv.replace("SKU2", "SKU3"), idempotency_key=key)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]


def test_status_pages_products_in_serial_order(stack, image_server):
    url = image_server.image("tiny.jpg")
    rows = [(serial, f"P{serial}", [url]) for serial in (5, 3, 9, 1, 7)]
    request_id = accepted_id(stack.api, product_csv(rows))
    page = status(stack.api, request_id, offset=1, limit=2)
    assert [p["serial_number"] for p in page["products"]] == [3, 5]
    assert page["progress"]["products_total"] == 5
    assert httpx.get(f"{stack.api}/status/{request_id}", params={"limit": 1001}).status_code == 422
    assert httpx.get(f"{stack.api}/status/{request_id}", params={"offset": -1}).status_code == 422
    # Past 64 bits an offset reached MongoDB and failed with a 500 (found by Schemathesis).
    for path in (f"/status/{request_id}", f"/status/{request_id}/images"):
        assert httpx.get(f"{stack.api}{path}", params={"offset": 2**64}).status_code == 422


def test_output_csv_escapes_formula_cells(stack, image_server):
    url = image_server.image("photo.jpg")
    text = f'S. No.,Product Name,Input Image Urls\n1,"=HYPERLINK(""http://evil.test"")",{url}\n2,@SUM(A1),{url}\n3,Plain,{url}\n'
    request_id = accepted_id(stack.api, text)
    wait_final(stack.api, request_id)
    response = httpx.get(f"{stack.api}/download/{request_id}")
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"]
    assert rows[1][1] == '\'=HYPERLINK("http://evil.test")'
    assert rows[2][1] == "'@SUM(A1)"
    assert rows[3][1] == "Plain"
    assert rows[3][3].startswith(f"{stack.base_url}/media/")


def test_aliases_answer_but_are_hidden_from_the_schema(stack, sample_csv):
    schema = httpx.get(f"{stack.base_url}/openapi.json").json()
    assert set(schema["paths"]) >= {
        "/api/v1/upload",
        "/api/v1/status/{request_id}",
        "/api/v1/download/{request_id}",
        "/api/v1/webhook",
    }
    for alias in (
        "/upload",
        "/api/upload",
        "/status/{request_id}",
        "/output_csv/{request_id}",
        "/export/{request_id}/",
    ):
        assert alias not in schema["paths"]
    for path in ("/api/upload", "/upload", "/upload/"):
        response = httpx.post(f"{stack.base_url}{path}", files={"file": ("p.csv", sample_csv.encode())})
        assert response.status_code == 202, path
    request_id = response.json()["request_id"]
    for path in (f"/api/status/{request_id}", f"/status/{request_id}", f"/status/{request_id}/"):
        assert httpx.get(f"{stack.base_url}{path}").status_code == 200, path
    wait_final(stack.api, request_id)
    for path in (f"/api/download/{request_id}", f"/output_csv/{request_id}", f"/export/{request_id}/"):
        assert httpx.get(f"{stack.base_url}{path}").status_code == 200, path
    response = httpx.post(
        f"{stack.base_url}/api/webhook", json={"request_id": request_id, "webhook_url": "https://x.test/h"}
    )
    assert response.status_code == 200


def test_webhook_registration_validates_the_url(stack, sample_csv):
    request_id = accepted_id(stack.api, sample_csv)
    bad = httpx.post(f"{stack.api}/webhook", json={"request_id": request_id, "webhook_url": "ftp://x.test/h"})
    assert bad.status_code == 400
    good = httpx.post(f"{stack.api}/webhook", json={"request_id": request_id, "webhook_url": "https://x.test/h"})
    assert good.status_code == 200
    assert good.json() == {"request_id": request_id, "webhook_url": "https://x.test/h"}
    assert status(stack.api, request_id)["webhook"]["url"] == "https://x.test/h"


def test_media_serves_stored_images_with_their_type(stack, image_server):
    request_id = accepted_id(stack.api, product_csv([(1, "A", [image_server.image("photo.jpg")])]))
    url = wait_final(stack.api, request_id)["products"][0]["output_image_urls"][0]
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"


def test_health_and_readiness(stack):
    assert httpx.get(f"{stack.base_url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{stack.base_url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["mongodb"] == ready.json()["redis"] == "ok"
