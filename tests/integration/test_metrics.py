"""Metrics: the API's /metrics counts every program of its host, across codec processes that are replaced;
the image worker serves the same on WORKER_METRICS_PORT; Flower runs beside them."""

import signal

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from local_stack.processes import free_port
from tests.support.client import accepted_id, product_csv, wait_final
from tests.support.stack import start_stack, wait_until

WORKER_METRICS_PORT = free_port()
FLOWER_PORT = free_port()


@pytest.fixture(scope="module")
def metered_stack(tmp_path_factory):
    settings = {
        "WORKER_METRICS_PORT": str(WORKER_METRICS_PORT),
        "FLOWER_PORT": str(FLOWER_PORT),
        "CODEC_CONCURRENCY": "2",
    }
    with start_stack(tmp_path_factory.mktemp("metered"), settings) as running:
        yield running


def samples(url: str) -> dict[tuple[str, frozenset], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def kill_a_codec_process(worker_pid: int) -> None:
    """SIGKILL one codec process of the image worker (spawned: `spawn_main` in its command line)."""
    codecs = [child for child in psutil.Process(worker_pid).children() if "spawn_main" in " ".join(child.cmdline())]
    assert len(codecs) == 2, codecs  # CODEC_CONCURRENCY
    codecs[0].send_signal(signal.SIGKILL)
    # Not our child to wait for: the worker reaps it when it next gives it an image.
    wait_until(lambda: gone(codecs[0]), 10, interval=0.05, message="the codec process to die")


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_metrics_count_every_image_across_a_killed_codec_process(metered_stack, image_server):
    stack = metered_stack
    first = [(1, "A", [image_server.image("photo.jpg"), f"{image_server.url}/status/404"]),
             (2, "B", [image_server.image("photo.png")])]  # fmt: skip
    second = [(1, "C", [image_server.image("photo2.jpg")]),
              (2, "D", [image_server.image("photo.webp"), f"{image_server.url}/status/410"])]  # fmt: skip
    progress = [wait_final(stack.api, accepted_id(stack.api, product_csv(first)))["progress"]]
    kill_a_codec_process(stack.pid_of("worker"))
    progress.append(wait_final(stack.api, accepted_id(stack.api, product_csv(second)))["progress"])

    scraped = samples(f"{stack.base_url}/metrics")
    assert value(scraped, "image_service_images_total", outcome="stored") == 4
    assert value(scraped, "image_service_images_total", outcome="failed") == 2
    assert value(scraped, "image_service_bytes_in_total") == sum(p["bytes_in"] for p in progress)
    assert value(scraped, "image_service_bytes_out_total") == sum(p["bytes_out"] for p in progress)
    assert value(scraped, "image_service_image_step_seconds_count", step="download") == 6
    assert value(scraped, "image_service_image_step_seconds_count", step="compress") == 4
    assert value(scraped, "image_service_requests_accepted_total") == 2
    assert value(scraped, "image_service_requests_finished_total", status="completed_with_errors") == 2
    for queue in ("images", "control", "webhooks"):
        assert ("image_service_queue_depth", frozenset({("queue", queue)})) in scraped
    upload = {("handler", "/api/v1/upload"), ("method", "POST"), ("status", "202")}
    assert value(scraped, "http_requests_total", **dict(upload)) == 2
    assert any(name == "http_request_duration_seconds_count" for name, _ in scraped)

    # A host without an API: the image worker serves the same totals itself.
    served = samples(f"http://127.0.0.1:{WORKER_METRICS_PORT}/metrics")
    for outcome in ("stored", "failed"):
        assert value(served, "image_service_images_total", outcome=outcome) == value(
            scraped, "image_service_images_total", outcome=outcome
        )


def test_flower_runs_beside_the_stack_and_sees_the_workers_and_their_tasks(metered_stack, image_server):
    # The workers run without gossip and mingle (local_stack/processes.py): what Flower learns
    # comes from their own events, which still reach it.
    def flower_metrics() -> str:
        try:
            response = httpx.get(f"http://127.0.0.1:{FLOWER_PORT}/metrics", timeout=5)
        except httpx.HTTPError:
            return ""
        return response.text if response.status_code == 200 else ""

    assert "flower_" in wait_until(flower_metrics, 60, interval=1, message="Flower's /metrics")
    catalogue = product_csv([(1, "F", [image_server.image("photo.jpg")])])
    wait_final(metered_stack.api, accepted_id(metered_stack.api, catalogue))
    product_succeeded = 'task="images.process_product",type="task-succeeded",worker="images@'

    def seen_by_flower() -> bool:
        text = flower_metrics()
        return 'flower_worker_online{worker="images@' in text and product_succeeded in text

    wait_until(seen_by_flower, 60, interval=1, message="the image worker and its product task in Flower's metrics")
