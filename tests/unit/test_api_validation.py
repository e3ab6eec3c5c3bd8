"""The API's answers to bad input, in process (FastAPI's TestClient): nothing here reaches a database.

Every check below happens before the request is stored, so the application runs against
servers that are not there; what needs them is tested on the real stack (tests/integration).
"""

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api_service.main import create_app
from shared.settings import Settings

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there
SAMPLE = "S. No.,Product Name,Input Image Urls\n1,SKU1,https://img.example.com/a.jpg\n"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings.load(
        env_file=None, mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0", data_dir=tmp_path
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield client


def post_csv(api: TestClient, text: str | bytes, webhook_url: str | None = None) -> httpx.Response:
    content = text.encode() if isinstance(text, str) else text
    data = {"webhook_url": webhook_url} if webhook_url else None
    return api.post("/api/v1/upload", files={"file": ("products.csv", content, "text/csv")}, data=data)


def test_invalid_rows_are_all_reported_with_line_and_column(api):
    text = (
        "S. No.,Product Name,Input Image Urls\n1,A,https://x.test/a.jpg\nx,B,https://x.test/b.jpg\n3,,ftp://x.test/c\n"
    )
    response = post_csv(api, text)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "the CSV has 3 errors",
        "errors": [
            {"line": 3, "column": "S. No.", "message": "serial number must be a positive integer, got 'x'"},
            {"line": 4, "column": "Product Name", "message": "product name is empty"},
            {
                "line": 4,
                "column": "Input Image Urls",
                "message": "image URL 'ftp://x.test/c' is not an absolute http or https URL",
            },
        ],
    }


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"Product Name,Input Image Urls\nA,https://x.test/a.jpg\n", "S. No."),
        (b"S. No.,Product Name,Input Image Urls\n", "no product"),
        ("S. No.,Product Name,Input Image Urls\n1,Caf\xe9,https://x.test/a.jpg\n".encode("latin-1"), "UTF-8"),
    ],
)
def test_file_level_errors_are_400(api, content, fragment):
    response = post_csv(api, content)
    assert response.status_code == 400, response.text
    body = response.json()
    assert fragment.lower() in (body["detail"] + " ".join(e["message"] for e in body["errors"])).lower()


def test_invalid_webhook_url_is_400(api):
    response = post_csv(api, SAMPLE, webhook_url="not a url")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "invalid webhook_url: contains a space or control character",
        "errors": [{"line": 0, "column": "webhook_url", "message": "contains a space or control character"}],
    }


def test_a_body_that_is_not_a_multipart_form_is_400(api):
    response = api.post("/api/v1/upload", content=b"1,2,3", headers={"content-type": "text/csv"})
    assert response.status_code == 400
    assert response.json() == {"detail": "expected a multipart/form-data body with a `file` field"}


def test_a_form_without_the_file_is_400(api):
    response = api.post("/api/v1/upload", data={"webhook_url": "https://x.test/hook"}, files={"other": ("a.csv", b"x")})
    assert response.status_code == 400
    assert response.json() == {"detail": "the form has no `file` field with the CSV"}


def test_a_file_over_10_mib_is_413(api):
    row = "1,SKU,https://img.example.com/" + "a" * 1000 + ".jpg\n"
    text = "S. No.,Product Name,Input Image Urls\n" + row * (10 * 1024 + 20)
    response = post_csv(api, text)
    assert response.status_code == 413
    assert response.json() == {"detail": "the upload is larger than the 10 MiB limit"}


def test_more_than_10000_products_is_413(api):
    rows = "".join(f"{i},SKU{i},https://i.test/{i}.jpg\n" for i in range(1, 10_002))
    response = post_csv(api, "S. No.,Product Name,Input Image Urls\n" + rows)
    assert response.status_code == 413
    assert response.json() == {"detail": "the CSV has more than 10000 products; send at most 10000 per request"}


def test_openapi_documents_every_route_with_examples(api):
    schema = api.get("/openapi.json").json()
    upload_body = schema["paths"]["/api/v1/upload"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert upload_body["schema"]["properties"]["file"]["format"] == "binary"
    status_ok = schema["paths"]["/api/v1/status/{request_id}"]["get"]["responses"]["200"]
    assert "example" in status_ok["content"]["application/json"]
    assert api.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/media/../../etc/passwd",
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/media/..%2f..%2fetc%2fpasswd",
        "/media/nothing-here.jpg",
        "/media/",
    ],
)
def test_media_is_confined_to_the_media_folder(api, path):
    response = api.get(path)
    assert response.status_code == 404
