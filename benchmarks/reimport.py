"""The re-import run: the same catalogue uploaded twice, as a shop does every night, both timed.

The image host either sends validators (ETag, Last-Modified; a 304 to a request that names them)
or none. With validators the second upload should download no body at all; without, it downloads
every body again but decodes none (each body's SHA-256 is the remembered one).
"""

import time

from benchmarks.image_host import ImageHost
from benchmarks.measure import cpu_shares, cpu_snapshot
from benchmarks.service import product_csv, upload, wait_final
from local_stack.running import RunningStack


def timed_import(stack: RunningStack, host: ImageHost, csv_text: str, images: int, pids: dict[str, int]) -> dict:
    """One upload of the catalogue, to final: its seconds, what the host sent, what was reused."""
    counted = host.counts()
    watched = {**pids, "image_host": host.pid}
    before = cpu_snapshot(watched)
    started = time.perf_counter()
    request_id, _ = upload(stack.api, csv_text)
    final = wait_final(stack.api, request_id, stack.data_dir / "media" / request_id, images)
    seconds = time.perf_counter() - started
    after = host.counts()
    progress = final.status["progress"]
    return {
        "seconds": seconds,
        "images_per_second": images / seconds,
        "status": final.status["status"],
        "images_failed": progress["images_failed"],
        "images_reused": progress.get("images_reused", 0),
        "bodies_downloaded": after["bodies"] - counted["bodies"],
        "not_modified": after["not_modified"] - counted["not_modified"],
        "cpu_share": cpu_shares(before, cpu_snapshot(watched), seconds),
    }


def run_reimport(
    stack: RunningStack, host: ImageHost, pids: dict[str, int], run: str, images: int, per_product: int
) -> dict:
    products = images // per_product
    csv_text = product_csv(host, run, products, per_product)
    first = timed_import(stack, host, csv_text, products * per_product, pids)
    second = timed_import(stack, host, csv_text, products * per_product, pids)
    return {
        "images": products * per_product,
        "validators": host.validators,
        "latency_ms": round(host.latency * 1000),
        "first": first,
        "second": second,
        "speedup": first["seconds"] / second["seconds"],
    }
