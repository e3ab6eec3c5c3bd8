"""Several machines (CONTRACT §8): an API host and worker hosts sharing MongoDB, Redis and a bucket.

Everything is real: the shared servers and SeaweedFS are started here, the API host with
`make run` (WORKER_CONCURRENCY=0: no image worker of its own), and each worker host with
`make worker`, each host with its own DATA_DIR, as on separate machines.
"""

import time
from collections.abc import Iterator

import httpx
import pytest

from local_stack.processes import free_port
from local_stack.running import ready, wait_until
from tests.support.client import accepted_id, product_csv, status, wait_final
from tests.support.hosts import Host, host, shared_servers
from tests.support.stack import TEST_ENVIRONMENT

PRODUCTS = 12
IMAGES_PER_PRODUCT = 3


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, seaweedfs) -> Iterator[tuple[str, list[Host], dict[str, str]]]:
    """The API host's base URL, two worker hosts, and the settings they share.

    One cluster for the module: the test that loses a worker host comes last.
    """
    tmp_path = tmp_path_factory.mktemp("cluster")
    port = free_port()
    with shared_servers(tmp_path / "servers") as servers:
        shared = {
            **TEST_ENVIRONMENT,
            **servers,
            **seaweedfs.environment(),
            "S3_PREFIX": f"{tmp_path.name}/",
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "WORKER_CONCURRENCY": "2",
        }
        api_host = {**shared, "API_PORT": str(port), "WORKER_CONCURRENCY": "0"}
        with (
            host("run", tmp_path, "api-host", api_host) as api,
            host("worker", tmp_path, "worker-a", shared) as first,
            host("worker", tmp_path, "worker-b", shared) as second,
        ):
            base_url = f"http://127.0.0.1:{port}"
            wait_until(lambda: ready(base_url), 90, message="the API host")
            yield base_url, [api, first, second], shared


def request_of_slow_images(image_server) -> str:
    return product_csv(
        [
            (
                serial,
                f"P{serial}",
                [f"{image_server.url}/delay/1/photo.jpg?{serial}-{i}" for i in range(IMAGES_PER_PRODUCT)],
            )
            for serial in range(1, PRODUCTS + 1)
        ]
    )


def stored_keys(seaweedfs, prefix: str) -> list[str]:
    pages = seaweedfs.client().get_paginator("list_objects_v2").paginate(Bucket=seaweedfs.bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def assert_stored_in_the_bucket_only(body: dict, hosts: list[Host], seaweedfs, prefix: str) -> None:
    outputs = [url for product in body["products"] for url in product["output_image_urls"]]
    assert len(outputs) == PRODUCTS * IMAGES_PER_PRODUCT and all(outputs)
    for url in outputs:
        response = httpx.get(url, follow_redirects=True, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", url
    keys = stored_keys(seaweedfs, f"{prefix}{body['request_id']}/")
    assert len(keys) == len(outputs), "an image stored twice, or not at all"
    for machine in hosts:
        assert not (machine.data_dir / "media").exists(), f"{machine.name} wrote images to its own disk"


def test_worker_hosts_process_a_request_into_the_shared_bucket(cluster, image_server, seaweedfs):
    base_url, hosts, shared = cluster
    api = f"{base_url}/api/v1"
    body = wait_final(api, accepted_id(api, request_of_slow_images(image_server)), timeout=120)
    assert body["status"] == "completed"
    assert_stored_in_the_bucket_only(body, hosts, seaweedfs, shared["S3_PREFIX"])


def test_a_worker_host_lost_mid_request_loses_nothing(cluster, image_server, seaweedfs):
    base_url, hosts, shared = cluster
    api = f"{base_url}/api/v1"
    request_id = accepted_id(api, request_of_slow_images(image_server))
    wait_until(lambda: status(api, request_id)["progress"]["products_done"] >= 2, 60, message="progress")
    lost = hosts[1]
    lost.kill()
    killed_at = time.monotonic()

    body = wait_final(api, request_id, timeout=120)
    assert time.monotonic() - killed_at < 120
    assert body["status"] == "completed", [p["errors"] for p in body["products"] if p["errors"]]
    assert_stored_in_the_bucket_only(body, hosts, seaweedfs, shared["S3_PREFIX"])
