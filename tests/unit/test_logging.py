"""The log format (shared/logging.py) and the HTTP request id (api_service/http_request_ids.py), in process.

Lines go to a string instead of stderr; the API runs with FastAPI's TestClient against servers that
are not there, as in test_api_answers.py.
"""

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient
from pymongo.errors import ServerSelectionTimeoutError
from structlog.contextvars import bound_contextvars

from api_service.main import create_app
from shared.logging import HANDLER_NAME, LogFormat, configure_logging
from shared.settings import Settings
from tests.support.answering_store import AnsweringStore, failing_with
from worker_service.task_logging import task_context

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there
REQUEST_ID = "3f2c8a9e-5b1d-4c7e-9a2f-6d8e0b1c2a3f"

JsonLines = Callable[[], list[dict[str, object]]]


def configure_logging_to(stream: io.StringIO, log_format: LogFormat, level: int = logging.INFO) -> None:
    # pytest puts its own stderr back before each test runs, so the handler's stream is replaced instead.
    configure_logging(log_format, level)
    our_handler().setStream(stream)


def our_handlers() -> list[logging.Handler]:
    return [handler for handler in logging.getLogger().handlers if handler.get_name() == HANDLER_NAME]


def our_handler() -> logging.StreamHandler:
    [handler] = our_handlers()
    assert isinstance(handler, logging.StreamHandler)
    return handler


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield io.StringIO()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def json_lines(log: io.StringIO) -> JsonLines:
    """Every line logged to `log`, each parsed as one JSON object."""
    return lambda: [json.loads(line) for line in log.getvalue().splitlines()]


def test_a_standard_library_line_is_one_json_object_with_the_bound_context(log, json_lines):
    configure_logging_to(log, "json")
    with bound_contextvars(request_id=REQUEST_ID, product=2):
        logging.getLogger("worker.product").info("image %d failed: %s", 1, "HTTP 404")

    [line] = json_lines()
    assert line["event"] == "image 1 failed: HTTP 404"
    assert line["level"] == "info"
    assert line["logger"] == "worker.product"
    assert line["request_id"] == REQUEST_ID
    assert line["product"] == 2
    assert str(line["timestamp"]).endswith("Z")  # ISO 8601, UTC


def test_a_structlog_line_is_one_json_object_with_the_bound_context(log, json_lines):
    configure_logging_to(log, "json")
    with bound_contextvars(request_id=REQUEST_ID):
        structlog.get_logger("worker.tasks").warning("merged", products=3)

    [line] = json_lines()
    assert {key: line[key] for key in ("event", "level", "logger", "request_id", "products")} == {
        "event": "merged",
        "level": "warning",
        "logger": "worker.tasks",
        "request_id": REQUEST_ID,
        "products": 3,
    }
    assert "timestamp" in line


def test_an_exception_stays_in_its_one_json_line(log, json_lines):
    configure_logging_to(log, "json")
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        logging.getLogger("api.errors").exception("GET /x failed")

    [line] = json_lines()
    assert line["level"] == "error"
    assert "RuntimeError: a bug" in str(line["exception"])


def test_a_console_traceback_shows_no_local_variables(log):
    def fetch(url: str) -> None:
        password = "hunter2"  # noqa: F841 - a local a rich traceback would show
        raise RuntimeError(f"could not fetch {url}")

    configure_logging_to(log, "console")
    try:
        fetch("https://img.example.com/a.jpg")
    except RuntimeError:
        logging.getLogger("worker.product").exception("image failed")

    assert "RuntimeError: could not fetch https://img.example.com/a.jpg" in log.getvalue()
    assert "hunter2" not in log.getvalue()


def test_lines_below_the_level_and_httpx_urls_are_not_logged(log, json_lines):
    configure_logging_to(log, "json", logging.INFO)
    logging.getLogger("worker.tasks").debug("noise")
    logging.getLogger("httpx").info("HTTP Request: GET https://user:secret@img.example.com/a.jpg")

    assert json_lines() == []


def test_configuring_again_replaces_the_handler_of_ours_and_keeps_the_others(log, json_lines):
    others = [handler for handler in logging.getLogger().handlers if handler.get_name() != HANDLER_NAME]
    configure_logging("console")
    configure_logging_to(log, "json")
    logging.getLogger("worker.tasks").info("once")

    assert len(our_handlers()) == 1
    assert all(handler in logging.getLogger().handlers for handler in others)
    assert [line["event"] for line in json_lines()] == ["once"]


@pytest.mark.parametrize(
    ("name", "args", "context"),
    [
        (
            "images.process_product",
            [{"request_id": REQUEST_ID, "serial_number": 7}],
            {"request_id": REQUEST_ID, "product": 7},
        ),
        ("control.merge_results", [REQUEST_ID], {"request_id": REQUEST_ID}),
        ("webhooks.deliver", [REQUEST_ID], {"request_id": REQUEST_ID}),
        ("control.sweep", [], {}),
    ],
)
def test_each_task_binds_what_it_works_on(name, args, context):
    assert task_context(name, args) == context


@pytest.fixture
def client(tmp_path: Path, log: io.StringIO) -> Iterator[TestClient]:
    settings = Settings.load(
        mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0", data_dir=tmp_path, log_format="json"
    )
    app = create_app(settings)
    our_handler().setStream(log)

    @app.get("/test/logs")
    async def logs() -> dict[str, str]:
        logging.getLogger("api.test").info("handling")
        return {"status": "ok"}

    @app.get("/test/unexpected")
    async def unexpected() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def test_a_sane_incoming_request_id_is_echoed_and_on_every_line_of_the_request(client, json_lines):
    response = client.get("/test/logs", headers={"X-Request-ID": "client-id.42:abc"})

    assert response.headers["X-Request-ID"] == "client-id.42:abc"
    [line] = [line for line in json_lines() if line["event"] == "handling"]
    assert line["http_request_id"] == "client-id.42:abc"


@pytest.mark.parametrize("incoming", [None, "", "a" * 129, "two words", "line\tbreak", "é"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(client, incoming):
    headers = {"X-Request-ID": incoming.encode()} if incoming is not None else {}
    first = client.get("/healthz", headers=headers).headers["X-Request-ID"]
    second = client.get("/healthz", headers=headers).headers["X-Request-ID"]

    assert len(first) == 32 and int(first, 16) >= 0  # a uuid4 in hex
    assert first != second


def test_the_longest_sane_request_id_is_kept(client):
    assert client.get("/healthz", headers={"X-Request-ID": "a" * 128}).headers["X-Request-ID"] == "a" * 128


@pytest.mark.parametrize(("path", "status"), [("/nowhere", 404), ("/test/unexpected", 500)])
def test_error_answers_carry_the_request_id_too(client, path, status):
    response = client.get(path, headers={"X-Request-ID": "failing-1"})

    assert response.status_code == status
    assert response.headers["X-Request-ID"] == "failing-1"


def test_a_route_about_a_request_binds_its_id(client, json_lines):
    # The database does not answer: the route fails with a 503 and logs why, its request id on the line.
    client.app.state.services.store = AnsweringStore(failing_with(ServerSelectionTimeoutError("no servers")))
    response = client.get(f"/api/v1/status/{REQUEST_ID}", headers={"X-Request-ID": "status-1"})

    assert response.status_code == 503
    [line] = [line for line in json_lines() if line["logger"] == "api.errors"]
    assert line["http_request_id"] == "status-1"
    assert line["request_id"] == REQUEST_ID
