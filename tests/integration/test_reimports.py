"""Re-imports (CONTRACT §10) on a stack of their own, with the memory on and two API keys.

A catalogue uploaded again reuses what did not change: a host that sends validators is asked with
them and answers 304 (no body downloaded), one that sends none is downloaded but its unchanged
bytes are not decoded again; changed bytes, a refresh, another key or other codec settings process
the image again. Every test uses URLs of its own, so none sees what another left.
"""

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support import images
from tests.support.client import bearer, product_csv, wait_final
from tests.support.command import image_service
from tests.support.image_server import ImageServer
from tests.support.stack import Stack, start_stack, wait_until

KEY_A, KEY_B = "reimport-key-a", "reimport-key-b"
NAMES = ["photo.jpg", "photo.png", "photo.webp", "anim.gif"]


@pytest.fixture(scope="module")
def reuse_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Batches of the catalogues' four images: a request of fewer images than a batch is not batched.
    extra = {"REUSE_OUTPUTS": "true", "API_KEYS": f"{KEY_A},{KEY_B}", "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
             "REUSE_BATCH_IMAGES": "4"}  # fmt: skip
    with start_stack(tmp_path_factory.mktemp("reuse-stack"), extra) as running:
        yield running


def catalogue(image_server: ImageServer, route: str, names: list[str] = NAMES) -> list[str]:
    """URLs of this test's own: the same images, under a query no other test uses."""
    token = uuid.uuid4().hex
    return [f"{image_server.url}/{route}/{name}?t={token}" for name in names]


def upload_catalogue(stack: Stack, urls: list[str], key: str = KEY_A, refresh: bool | None = None) -> str:
    """Upload the catalogue (two products); the request's id."""
    rows = [(1, "SKU1", urls[:2]), (2, "SKU2", urls[2:])]
    data = {"refresh": "true" if refresh else "false"} if refresh is not None else None
    files = {"file": ("products.csv", product_csv(rows).encode(), "text/csv")}
    response = httpx.post(f"{stack.api}/upload", files=files, data=data, headers=bearer(key), timeout=60)
    assert response.status_code == 202, response.text
    return str(response.json()["request_id"])


def import_catalogue(stack: Stack, urls: list[str], key: str = KEY_A, refresh: bool | None = None) -> dict:
    """Upload the catalogue, wait until it is final; its status and processing log."""
    request_id = upload_catalogue(stack, urls, key, refresh)
    body = wait_final(stack.api, request_id, headers=bearer(key))
    log = httpx.get(f"{stack.api}/status/{request_id}/images", headers=bearer(key), timeout=30).json()["images"]
    return {"status": body, "log": log}


def outputs(result: dict) -> list[bytes]:
    return [httpx.get(entry["output_url"], timeout=30).content for entry in result["log"]]


def test_a_catalogue_from_a_host_with_validators_is_reused_without_downloading_a_body(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    first = import_catalogue(reuse_stack, urls)
    assert {entry["reuse"] for entry in first["log"]} == {None}
    assert first["status"]["progress"]["images_reused"] == 0
    paths = [url.removeprefix(image_server.url) for url in urls]
    bodies = [image_server.bodies[path] for path in paths]

    second = import_catalogue(reuse_stack, urls)

    assert second["status"]["status"] == "completed"
    assert [entry["reuse"] for entry in second["log"]] == ["not_modified"] * len(urls)
    assert second["status"]["progress"]["images_reused"] == len(urls)
    assert [image_server.bodies[path] for path in paths] == bodies, "a body was downloaded again"
    assert all(image_server.conditions[path][-1]["If-None-Match"] for path in paths)
    # Nothing decoded or encoded; the output is this request's own, byte for byte the first's.
    assert {entry["compress_ms"] for entry in second["log"]} == {None}
    request_id = second["status"]["request_id"]
    assert all(f"/media/{request_id}/" in entry["output_url"] for entry in second["log"])
    assert outputs(second) == outputs(first)
    assert [e["bytes_in"] for e in second["log"]] == [e["bytes_in"] for e in first["log"]]
    # And what is remembered was not written again: it changed in nothing but a use.
    with reuse_stack.mongo() as client:
        remembered = client["image_service"]["sources"]
        assert remembered.count_documents({"output.request_id": first["status"]["request_id"]}) == len(urls)


def batch_log(stack: Stack, request_id: str) -> str:
    """What the workers logged of the request's batches of remembered products."""
    logs = (stack.log_dir / "worker.log").read_text() + (stack.log_dir / "control.log").read_text()
    return "\n".join(line for line in logs.splitlines() if f"request {request_id}: " in line and "batch" in line)


def test_a_catalogue_all_remembered_is_checked_in_a_batch(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    first = import_catalogue(reuse_stack, urls)
    second = import_catalogue(reuse_stack, urls)
    request_id = second["status"]["request_id"]
    assert [entry["reuse"] for entry in second["log"]] == ["not_modified"] * len(urls)
    assert "2 products waiting for their turn (2 in 1 batches" in batch_log(reuse_stack, request_id)
    assert "2 of a batch of 2 products reused, 0 to process" in batch_log(reuse_stack, request_id)
    # A catalogue the memory holds none of goes as product tasks, without a lookup of its every image.
    assert "(0 in 0 batches" in batch_log(reuse_stack, first["status"]["request_id"])


def test_a_catalogue_partly_new_batches_only_its_products_remembered_whole(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    import_catalogue(reuse_stack, urls)
    # The second product's first image is new: the sample (the products' first images) is half known.
    changed = [*urls[:2], *catalogue(image_server, "validated", NAMES[2:3]), urls[3]]

    second = import_catalogue(reuse_stack, changed)

    assert [entry["reuse"] for entry in second["log"]] == ["not_modified", "not_modified", None, "not_modified"]
    assert "2 products waiting for their turn (1 in 1 batches" in batch_log(reuse_stack, second["status"]["request_id"])


def test_a_product_not_remembered_whole_leaves_a_batch_of_a_catalogue_sampled_as_known(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    import_catalogue(reuse_stack, urls)
    # Only the second product's second image is new: every image sampled (each product's first) is known.
    changed = [*urls[:3], *catalogue(image_server, "validated", NAMES[3:])]

    second = import_catalogue(reuse_stack, changed)

    assert second["status"]["status"] == "completed"
    assert [entry["reuse"] for entry in second["log"]] == ["not_modified", "not_modified", "not_modified", None]
    assert second["status"]["progress"]["images_reused"] == 3
    request_id = second["status"]["request_id"]
    assert "2 products waiting for their turn (2 in 1 batches" in batch_log(reuse_stack, request_id)
    assert "1 of a batch of 2 products reused, 1 to process" in batch_log(reuse_stack, request_id)


def test_a_product_whose_host_is_slow_to_confirm_leaves_its_batch_and_is_processed_as_usual(reuse_stack, image_server):
    # Its first check waits longer than the batch's DOWNLOAD_TOTAL_TIMEOUT_SECONDS (5 s in tests).
    slow = f"{image_server.url}/stalls_once/8/photo.jpg?t={uuid.uuid4().hex}"
    urls = [slow, *catalogue(image_server, "validated", NAMES[1:])]
    import_catalogue(reuse_stack, urls)

    second = import_catalogue(reuse_stack, urls)

    assert second["status"]["status"] == "completed"
    # Its product's own task asked again for both its images, was answered at once, and reused them.
    assert [entry["reuse"] for entry in second["log"]] == ["not_modified"] * len(urls)
    checks = {url: image_server.conditions[url.removeprefix(image_server.url)] for url in urls}
    assert [len([c for c in checks[url] if c]) for url in urls] == [2, 2, 1, 1]
    request_id = second["status"]["request_id"]
    assert "1 of a batch of 2 products reused, 1 to process" in batch_log(reuse_stack, request_id)


def test_a_batch_whose_request_is_cancelled_meanwhile_records_nothing_and_starts_nothing(reuse_stack, image_server):
    # Its first check waits past the batch's end (5 s), so the batch is under way at the cancel.
    slow = f"{image_server.url}/stalls_once/8/photo.jpg?t={uuid.uuid4().hex}"
    urls = [slow, *catalogue(image_server, "validated", NAMES[1:])]
    import_catalogue(reuse_stack, urls)
    request_id = upload_catalogue(reuse_stack, urls)
    slow_checks = image_server.conditions[slow.removeprefix(image_server.url)]
    wait_until(lambda: any(slow_checks), 10, message="the batch's check of the slow image")

    cancel = httpx.post(f"{reuse_stack.api}/requests/{request_id}/cancel", headers=bearer(KEY_A), timeout=30)
    assert cancel.status_code == 202, cancel.text
    body = wait_final(reuse_stack.api, request_id, headers=bearer(KEY_A))
    assert body["status"] == "cancelled"
    checks = {url: len(image_server.conditions[url.removeprefix(image_server.url)]) for url in urls}
    time.sleep(6)  # past the batch's end

    after = httpx.get(f"{reuse_stack.api}/status/{request_id}", headers=bearer(KEY_A), timeout=30).json()
    assert after["progress"] == body["progress"] and after["progress"]["images_reused"] == 0
    assert {product["status"] for product in after["products"]} == {"failed"}
    assert {url: len(image_server.conditions[url.removeprefix(image_server.url)]) for url in urls} == checks
    assert "of a batch" not in batch_log(reuse_stack, request_id), "the batch recorded its products"


def test_unchanged_bytes_from_a_host_without_validators_are_not_decoded_again(reuse_stack, image_server):
    urls = catalogue(image_server, "img")
    first = import_catalogue(reuse_stack, urls)
    second = import_catalogue(reuse_stack, urls)

    assert [entry["reuse"] for entry in second["log"]] == ["unchanged"] * len(urls)
    assert {entry["compress_ms"] for entry in second["log"]} == {None}
    assert all(entry["download_ms"] is not None for entry in second["log"])
    assert outputs(second) == outputs(first)


def test_changed_bytes_are_processed_again(reuse_stack, image_server):
    image_server.library["changing.jpg"] = (images.encode(images.photo(320, 240, seed=21), "JPEG"), "image/jpeg")
    [changing, *_] = urls = catalogue(image_server, "validated", ["changing.jpg", *NAMES[1:]])
    first = import_catalogue(reuse_stack, urls)
    image_server.library["changing.jpg"] = (images.encode(images.photo(320, 240, seed=22), "JPEG"), "image/jpeg")

    second = import_catalogue(reuse_stack, urls)

    assert [entry["reuse"] for entry in second["log"]] == [None, "not_modified", "not_modified", "not_modified"]
    assert second["log"][0]["compress_ms"] is not None
    assert outputs(second)[0] != outputs(first)[0]
    assert second["status"]["progress"]["images_reused"] == 3
    # And the next time, the changed image is what is remembered.
    third = import_catalogue(reuse_stack, urls)
    assert third["log"][0]["reuse"] == "not_modified"
    assert outputs(third)[0] == outputs(second)[0]
    assert changing


def test_a_refresh_asks_no_conditions_and_processes_everything_to_the_same_bytes(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    first = import_catalogue(reuse_stack, urls)
    paths = [url.removeprefix(image_server.url) for url in urls]

    refreshed = import_catalogue(reuse_stack, urls, refresh=True)

    assert {entry["reuse"] for entry in refreshed["log"]} == {None}
    assert all(image_server.conditions[path][-1] == {} for path in paths)
    assert all(entry["compress_ms"] is not None for entry in refreshed["log"])
    # What processing stores again is what reuse copies: byte for byte.
    assert outputs(refreshed) == outputs(first)


def test_another_key_reuses_nothing_of_the_first_keys(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    import_catalogue(reuse_stack, urls, key=KEY_A)
    paths = [url.removeprefix(image_server.url) for url in urls]

    other = import_catalogue(reuse_stack, urls, key=KEY_B)

    assert {entry["reuse"] for entry in other["log"]} == {None}
    assert all(image_server.conditions[path][-1] == {} for path in paths), "B's request used A's validators"
    # Each key then remembers its own.
    assert {e["reuse"] for e in import_catalogue(reuse_stack, urls, key=KEY_B)["log"]} == {"not_modified"}


def test_a_remembered_output_that_is_gone_is_processed_again(reuse_stack, image_server):
    urls = catalogue(image_server, "validated")
    first = import_catalogue(reuse_stack, urls)
    request_id = first["status"]["request_id"]
    # As if that request had been deleted with its images.
    for stored in (reuse_stack.data_dir / "media" / request_id).iterdir():
        stored.unlink()

    second = import_catalogue(reuse_stack, urls)

    assert second["status"]["status"] == "completed"
    assert {entry["reuse"] for entry in second["log"]} == {None}
    assert all(entry["compress_ms"] is not None for entry in second["log"])
    assert outputs(second) == [httpx.get(e["output_url"]).content for e in second["log"]]
    assert all(len(content) > 0 for content in outputs(second))


def test_a_changed_codec_setting_processes_again(tmp_path, image_server):
    urls = catalogue(image_server, "validated")
    environment = {"REUSE_OUTPUTS": "true", "API_KEYS": KEY_A, "JPEG_QUALITY": "50"}
    with start_stack(tmp_path, environment) as stack:
        import_catalogue(stack, urls)
        again = import_catalogue(stack, urls)
        assert {entry["reuse"] for entry in again["log"]} == {"not_modified"}
        at_50 = outputs(again)
    with start_stack(tmp_path, {**environment, "JPEG_QUALITY": "60"}) as stack:
        changed = import_catalogue(stack, urls)
        at_60 = outputs(changed)
    assert {entry["reuse"] for entry in changed["log"]} == {None}
    assert at_60[0] != at_50[0]


def test_the_command_counts_reused_images_and_can_refresh(reuse_stack, image_server, tmp_path):
    products = tmp_path / "products.csv"
    products.write_text(product_csv([(1, "SKU1", catalogue(image_server, "validated", NAMES[:2]))]))
    upload = ("upload", str(products), "--wait")
    first = image_service(*upload, server=reuse_stack.base_url, api_key=KEY_A)
    assert first.returncode == 0, first.stderr
    assert ": completed: 2 images stored, 0 failed" in first.stdout

    again = image_service(*upload, server=reuse_stack.base_url, api_key=KEY_A)
    assert ": completed: 2 images stored (2 unchanged since an earlier upload, reused), 0 failed" in again.stdout

    refreshed = image_service(*upload, "--refresh", server=reuse_stack.base_url, api_key=KEY_A)
    assert ": completed: 2 images stored, 0 failed" in refreshed.stdout


def test_reused_images_are_counted_in_the_metrics(reuse_stack, image_server):
    def reused(kind: str) -> float:
        scrape = httpx.get(f"{reuse_stack.base_url}/metrics", timeout=30).text
        line = next(
            (
                row
                for row in scrape.splitlines()
                if row.startswith(f'image_service_images_reused_total{{reuse="{kind}"}}')
            ),
            None,
        )
        return float(line.split()[-1]) if line else 0.0

    before = reused("not_modified"), reused("unchanged")
    validated, plain = catalogue(image_server, "validated", NAMES[:2]), catalogue(image_server, "img", NAMES[2:])
    import_catalogue(reuse_stack, validated + plain)
    import_catalogue(reuse_stack, validated + plain)
    assert (reused("not_modified") - before[0], reused("unchanged") - before[1]) == (2, 2)
