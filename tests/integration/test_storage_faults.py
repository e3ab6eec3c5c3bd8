"""Storage that refuses writes loses nothing (CONTRACT §7): a full disk, then enlarged; an S3 store
killed, then started again. The request stays `processing`, /readyz says storage refuses writes,
and once it accepts them again the request finishes with every image stored once."""

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local_stack.seaweedfs import seaweedfs_process
from tests.support.client import accepted_id, product_csv, status, wait_final
from tests.support.images import decode
from tests.support.stack import start_stack, wait_until

PRODUCTS = 12


def mount_tmpfs(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """DATA_DIR, its media folder a file system of 1 MiB (made bigger by the test)."""
    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run the suite as root, as `make test` does on the build machines")
    media = tmp_path / "data" / "media"
    media.mkdir(parents=True)
    mount_tmpfs(media, "1m")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(media)], check=False)


def readiness(base_url: str) -> dict:
    return httpx.get(f"{base_url}/readyz", timeout=10).json()


def catalogue(image_server) -> str:
    mark = uuid.uuid4().hex
    # PNGs are stored losslessly: about 110 KB each, so twelve do not fit in 1 MiB.
    return product_csv(
        [(i, f"P{i}", [f"{image_server.image('photo.png')}?{mark}-{i}"]) for i in range(1, PRODUCTS + 1)]
    )


def test_a_full_disk_holds_images_back_until_it_has_room(small_disk, image_server):
    with start_stack(small_disk, {"WORKER_CONCURRENCY": "2"}) as stack:
        request_id = accepted_id(stack.api, catalogue(image_server))
        wait_until(lambda: readiness(stack.base_url)["storage"] == "refusing writes", 30, message="storage refusing")
        assert httpx.get(f"{stack.base_url}/readyz").status_code == 503
        time.sleep(3)
        held = status(stack.api, request_id)
        assert held["status"] == "processing", "a full disk failed the request"
        assert held["progress"]["images_failed"] == 0

        subprocess.run(["mount", "-o", "remount,size=64m", str(stack.data_dir / "media")], check=True)

        body = wait_final(stack.api, request_id, timeout=60)
        assert body["status"] == "completed"
        assert body["progress"]["images_failed"] == 0
        stored = sorted(path.name for path in (stack.data_dir / "media" / request_id).iterdir())
        assert stored == sorted(f"{i}-0.png" for i in range(1, PRODUCTS + 1)), "a part or a second copy stayed"
        for product in body["products"]:
            assert decode(httpx.get(product["output_image_urls"][0]).content).size == (300, 200)
        wait_until(lambda: readiness(stack.base_url)["storage"] == "ok", 40, message="storage ok again")
        scrape = httpx.get(f"{stack.base_url}/metrics").text
        assert any(line.startswith("image_service_storage_refusals_total") and not line.endswith(" 0.0")
                   for line in scrape.splitlines())  # fmt: skip


def test_an_s3_store_down_mid_request_holds_images_back_until_it_is_back(tmp_path, image_server):
    with seaweedfs_process(tmp_path / "seaweedfs") as weed:
        environment = {**weed.server.environment(), "WORKER_CONCURRENCY": "2", "S3_PREFIX": "faults/"}
        with start_stack(tmp_path / "stack", environment) as stack:
            mark = uuid.uuid4().hex
            rows = [(i, f"P{i}", [f"{image_server.url}/delay/0.4/photo.jpg?{mark}-{i}"]) for i in range(1, 21)]
            request_id = accepted_id(stack.api, product_csv(rows))
            wait_until(lambda: status(stack.api, request_id)["progress"]["images_done"] >= 2, 30, message="a start")
            weed.kill()
            wait_until(lambda: readiness(stack.base_url)["storage"] == "refusing writes", 30, message="refusing")
            time.sleep(3)
            assert status(stack.api, request_id)["status"] == "processing"
            weed.start()

            body = wait_final(stack.api, request_id, timeout=90)
            assert body["status"] == "completed"
            assert body["progress"]["images_failed"] == 0
            listed = weed.server.client().list_objects_v2(Bucket=weed.server.bucket, Prefix=f"faults/{request_id}/")
            assert sorted(entry["Key"] for entry in listed["Contents"]) == sorted(
                f"faults/{request_id}/{i}-0.jpg" for i in range(1, 21)
            )
