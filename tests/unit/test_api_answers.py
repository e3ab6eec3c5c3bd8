"""What the API answers, in process: JSON errors whatever fails, 503 for a database that does not
answer, and no password from a client's URL in any answer.

The application runs with FastAPI's TestClient against servers that are not there; the
store a route asks is replaced where a test needs it to answer or fail (tests/support/answering_store.py).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.dependencies import utils as dependency_utils
from fastapi.testclient import TestClient
from kombu.exceptions import OperationalError
from pymongo.errors import NetworkTimeout, OperationFailure, ServerSelectionTimeoutError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api_service.errors import RETRY_AFTER_SECONDS
from api_service.main import create_app
from api_service.output_csv import output_row
from shared.models import utcnow
from shared.settings import Settings
from shared.storage import LocalStorage
from shared.store.requests import new_request
from shared.views import status_view
from tests.support.answering_store import AnsweringStore, failing_with

SECRET_URL = "https://user:hunter2@img.example.com/a.jpg"
SECRET_HOOK = "https://hooks:hunter2@shop.example.com/hooks"
NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there


class Row:
    def __init__(self, serial_number: int, urls: list[str]) -> None:
        self.serial_number, self.product_name, self.input_image_urls = serial_number, f"SKU{serial_number}", urls


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings.load(mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0", data_dir=tmp_path)
    app = create_app(settings)

    @app.get("/test/unexpected")
    async def unexpected() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_an_unexpected_error_is_a_500_with_a_json_detail(client):
    response = client.get("/test/unexpected")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "internal error"}


@pytest.mark.parametrize("path", ["/media/a%00b", "/media/" + "a" * 5000, "/media/..%2f..%2fetc%2fpasswd"])
def test_an_invalid_media_key_is_a_404_with_a_json_detail(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json() == {"detail": "not found"}


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404), ("DELETE", "/api/v1/upload", 405)])
def test_an_unknown_path_or_method_is_json(client, method, path, status):
    response = client.request(method, path)
    assert response.status_code == status
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(
    "error",
    [
        ServerSelectionTimeoutError("no servers"),
        NetworkTimeout("timed out"),
        OperationFailure("operation exceeded time limit", code=50),  # MaxTimeMSExpired
    ],
)
def test_a_database_that_does_not_answer_is_a_503_with_retry_after(client, error):
    client.app.state.services.store = AnsweringStore(failing_with(error))
    response = client.get("/api/v1/status/some-id")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {"detail": "the database is not answering; try again shortly"}


@pytest.mark.parametrize("error", [RedisTimeoutError("Timeout reading from socket"), OperationalError("down")])
def test_a_task_queue_that_does_not_answer_is_a_503_with_retry_after(client, error):
    client.app.state.services.store = AnsweringStore(failing_with(error))
    response = client.get("/api/v1/download/some-id")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_SECONDS)
    assert response.json() == {"detail": "the task queue is not answering; try again shortly"}


def test_a_database_error_that_is_not_an_outage_is_a_500(client):
    client.app.state.services.store = AnsweringStore(failing_with(OperationFailure("bad query", code=2)))
    response = client.get("/api/v1/status/some-id")
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error"}


def test_the_real_client_gives_up_on_a_database_that_is_not_there_within_seconds(client):
    response = client.get("/api/v1/status/some-id")
    assert response.status_code == 503
    assert response.elapsed.total_seconds() < 10


def request_with_credentials() -> dict:
    document = new_request(
        "r1",
        [Row(1, [SECRET_URL, "https://img.example.com/b.jpg"])],
        now=utcnow(),
        webhook_url=SECRET_HOOK,
        idempotency_key=None,
        file_sha256="0" * 64,
    )
    document["products"][0]["errors"] = [{"index": 0, "message": "HTTP 404"}]
    return document


def test_the_status_never_shows_a_password_from_a_url(tmp_path):
    view = status_view(request_with_credentials(), LocalStorage(tmp_path, "http://api/media"), "http://api/d/r1")
    product = view.products[0]
    assert product.input_image_urls == ["https://user:***@img.example.com/a.jpg", "https://img.example.com/b.jpg"]
    assert product.errors[0].url == "https://user:***@img.example.com/a.jpg"
    assert view.webhook.url == "https://hooks:***@shop.example.com/hooks"
    assert "hunter2" not in view.model_dump_json()


def test_the_output_csv_keeps_the_urls_as_uploaded(tmp_path):
    product = request_with_credentials()["products"][0]
    assert SECRET_URL in output_row(product, LocalStorage(tmp_path, "http://api/media"))[2]


def test_the_webhook_answer_never_shows_a_password(client):
    def replaced(operation):
        return {"_id": "r1", "status": "processing", "webhook": operation.update["$set"]["webhook"]}

    client.app.state.services.store = AnsweringStore(replaced)
    response = client.post("/api/v1/webhook", json={"request_id": "r1", "webhook_url": SECRET_HOOK})
    assert response.status_code == 200
    assert response.json() == {"request_id": "r1", "webhook_url": "https://hooks:***@shop.example.com/hooks"}


def test_a_request_hands_no_dependency_to_a_thread(client, monkeypatch):
    # FastAPI runs a plain function dependency in its thread pool: a thread hand-off per request.
    handed: list[str] = []
    hand_off = dependency_utils.run_in_threadpool

    async def recorded(call, *args, **kwargs):
        handed.append(call.__qualname__)
        return await hand_off(call, *args, **kwargs)

    monkeypatch.setattr(dependency_utils, "run_in_threadpool", recorded)
    client.post("/api/v1/upload")  # refused for want of a file, once its dependencies are solved
    assert handed == []
