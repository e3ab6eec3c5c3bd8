"""LOG_FORMAT=json on the real stack: every line of the API's and the image worker's logs is one
JSON object, and the lines of a request's tasks carry its id."""

import json
from pathlib import Path

from tests.support.client import product_csv, upload, wait_final
from tests.support.stack import start_stack, wait_until


def json_lines(log: Path) -> list[dict[str, object]]:
    """Every line of `log`, each of which must be one JSON object."""
    lines = []
    for number, text in enumerate(log.read_text().splitlines(), start=1):
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as error:
            raise AssertionError(f"{log.name}, line {number} is not JSON: {text!r}") from error
    return lines


def about(request_id: str, log: Path) -> list[dict[str, object]]:
    return [line for line in json_lines(log) if line.get("request_id") == request_id]


def test_json_logs_carry_the_request_id_of_each_task(tmp_path, image_server):
    with start_stack(tmp_path, {"LOG_FORMAT": "json"}) as stack:
        # One image stored, one that fails: a line of the image thread about that one.
        urls = [image_server.image("photo.jpg"), f"{image_server.url}/status/404"]
        response = upload(stack.api, product_csv([(1, "SKU1", urls)]))
        assert response.status_code == 202, response.text
        assert response.headers["X-Request-ID"]
        request_id = response.json()["request_id"]
        wait_final(stack.api, request_id)

        # Celery logs how the product task ended after the result is recorded: wait for that line.
        product_task_ended = wait_until(
            lambda: [
                line for line in about(request_id, stack.log_dir / "worker.log") if line["logger"] == "celery.app.trace"
            ],
            timeout=30,
            message="the product task's end in the worker's log",
        )
        worker_lines = about(request_id, stack.log_dir / "worker.log")
        control_lines = wait_until(
            lambda: about(request_id, stack.log_dir / "control.log"), 30, message="control lines"
        )
        api_lines = json_lines(stack.log_dir / "api.log")

    assert "succeeded" in str(product_task_ended[0]["event"])
    assert product_task_ended[0]["product"] == 1
    [failed_image] = [line for line in worker_lines if line["logger"] == "worker.product"]
    assert (failed_image["product"], failed_image["image"], failed_image["level"]) == (1, 1, "info")
    assert "404" in str(failed_image["event"])
    assert any(line["logger"] == "worker.tasks" for line in control_lines)
    for line in [*worker_lines, *control_lines, *api_lines]:
        assert {"timestamp", "level", "logger", "event"} <= line.keys()
    # uvicorn's own lines come through the same formatter.
    assert any(line["logger"].startswith("uvicorn") for line in api_lines)
