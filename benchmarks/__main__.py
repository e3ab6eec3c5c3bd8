"""`make bench`: end-to-end throughput of the service against the Pillow ceiling, in one run.

It generates a fixed-seed corpus, serves it from a local image host with a set latency,
starts the service exactly as `make run` does (embedded MongoDB and Redis), uploads CSVs of
P products × K images through the public API and polls until they are final. In the same
run it measures the ceiling: Pillow alone on the same images, one process per core.
Results go to benchmarks/results/latest.json and latest.md.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks import ceiling
from benchmarks.corpus import generate
from benchmarks.image_host import ImageHost
from benchmarks.measure import PeakMemory, percentile, status_latency, tree_cpu_seconds
from benchmarks.report import markdown
from local_stack.running import running_stack
from shared.models import FINAL_STATUS_VALUES

RESULTS = Path(__file__).resolve().parent / "results"


def product_csv(host: ImageHost, run: str, products: int, per_product: int) -> str:
    lines = ["S. No.,Product Name,Input Image Urls"]
    for product in range(products):
        urls = ",".join(host.url(run, product * per_product + k) for k in range(per_product))
        lines.append(f'{product + 1},SKU{product + 1},"{urls}"')
    return "\n".join(lines) + "\n"


def upload(api: str, csv_text: str) -> tuple[str, float]:
    started = time.perf_counter()
    response = httpx.post(f"{api}/upload", files={"file": ("bench.csv", csv_text.encode(), "text/csv")}, timeout=120)
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.json()["request_id"], elapsed


def wait_final(api: str, request_id: str, limit: float = 3600) -> dict:
    deadline = time.monotonic() + limit
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < deadline:
            body = client.get(f"{api}/status/{request_id}", params={"limit": 1}).json()
            if body["status"] in FINAL_STATUS_VALUES:
                return body
            time.sleep(0.25)
    raise TimeoutError(f"request {request_id} not final after {limit} s")


def image_latencies(
    stack, host: ImageHost, run: str, request_id: str, products: int, per_product: int
) -> tuple[list[float], int]:
    """Seconds from the image host seeing the download to the output file being stored; and output bytes."""
    folder = stack.data_dir / "media" / request_id
    latencies, output_bytes = [], 0
    for product in range(products):
        for k in range(per_product):
            index = product * per_product + k
            stored = list(folder.glob(f"{product + 1}-{k}.*"))
            arrived = host.arrivals.get(f"/img/{index % len(host.corpus)}/{run}-{index}")
            if stored and arrived:
                stat = stored[0].stat()
                latencies.append(stat.st_mtime - arrived)
                output_bytes += stat.st_size
    return latencies, output_bytes


def run_request(stack, host: ImageHost, pids: dict[str, int], images: int, per_product: int, latency_ms: int) -> dict:
    products = images // per_product
    run = f"n{images}-l{latency_ms}"
    indexes = range(products * per_product)
    cpu_before = tree_cpu_seconds(pids["worker"])
    with PeakMemory(pids) as memory:
        started = time.perf_counter()
        request_id, _ = upload(stack.api, product_csv(host, run, products, per_product))
        final = wait_final(stack.api, request_id)
        wall = time.perf_counter() - started
    cpu = tree_cpu_seconds(pids["worker"]) - cpu_before
    latencies, output_bytes = image_latencies(stack, host, run, request_id, products, per_product)
    input_bytes = sum(len(host.image_of(i).data) for i in indexes)
    megapixels = sum(host.image_of(i).megapixels for i in indexes)
    return {
        "images": len(indexes),
        "products": products,
        "latency_ms": latency_ms,
        "status": final["status"],
        "images_failed": final["progress"]["images_failed"],
        "seconds": wall,
        "images_per_second": len(indexes) / wall,
        "megapixels_per_second": megapixels / wall,
        "image_latency_p50_s": percentile(latencies, 0.5),
        "image_latency_p95_s": percentile(latencies, 0.95),
        "output_to_input_bytes": output_bytes / input_bytes,
        "worker_cpu_utilisation": cpu / (wall * (os.cpu_count() or 1)),
        "peak_memory_mb": {name: peak / 2**20 for name, peak in memory.peaks.items()},
    }


def status_under_pollers(stack, host: ImageHost, per_product: int, images: int) -> dict:
    products = images // per_product
    request_id, _ = upload(stack.api, product_csv(host, "pollers", products, per_product))
    return status_latency(f"{stack.api}/status/{request_id}", count=50)


def accept_time(stack, host: ImageHost, products: int) -> float:
    lines = ["S. No.,Product Name,Input Image Urls"]
    lines += [f"{i},SKU{i},{host.url('accept', i)}" for i in range(1, products + 1)]
    _, elapsed = upload(stack.api, "\n".join(lines) + "\n")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="300,1000,3000", help="images per request, comma-separated")
    parser.add_argument("--latencies", default="0,200", help="image host latency per request in ms, comma-separated")
    parser.add_argument("--per-product", type=int, default=5, help="images per product")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per connection (default: unlimited)")
    parser.add_argument("--pollers-images", type=int, default=1000, help="images in the request polled by 50 clients")
    parser.add_argument(
        "--accept-products", type=int, default=10_000, help="products in the CSV whose acceptance is timed"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    arguments = parser.parse_args()
    sizes = [int(s) for s in arguments.sizes.split(",")]
    latencies = [int(s) for s in arguments.latencies.split(",")]

    print("generating the corpus…", flush=True)
    corpus = generate()
    cycle = [image.data for image in corpus] * 20
    print("measuring the Pillow ceiling…", flush=True)
    limits = {
        "plain_pillow_images_per_second": ceiling.images_per_second(cycle, ceiling.plain_pillow),
        "service_codec_images_per_second": ceiling.images_per_second(cycle, ceiling.service_codec),
    }
    mean_megapixels = sum(image.megapixels for image in corpus) / len(corpus)
    report = {
        "cores": os.cpu_count(),
        "corpus": {
            "images": len(corpus),
            "mean_megapixels": mean_megapixels,
            "megapixels": [round(i.megapixels, 2) for i in corpus],
        },
        "per_product": arguments.per_product,
        "ceiling": limits,
        "runs": [],
    }
    environment = {
        "ALLOW_PRIVATE_NETWORKS": "true",
        # Every poller and upload comes from this one address: the rate limits would measure themselves.
        "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        **{k: v for k, v in os.environ.items() if k in ("WORKER_CONCURRENCY", "DOWNLOAD_CONCURRENCY")},
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as root, running_stack(Path(root), environment) as stack:
        pids = {"api": stack.pid_of("api"), "worker": stack.pid_of("worker")}
        for latency_ms in latencies:
            with ImageHost(corpus, latency_ms / 1000, arguments.bandwidth) as host:
                for images in sizes:
                    print(f"{images} images at {latency_ms} ms…", flush=True)
                    result = run_request(stack, host, pids, images, arguments.per_product, latency_ms)
                    result["ratio_to_ceiling"] = result["images_per_second"] / limits["plain_pillow_images_per_second"]
                    result["ratio_to_codec_ceiling"] = (
                        result["images_per_second"] / limits["service_codec_images_per_second"]
                    )
                    report["runs"].append(result)
                    print(json.dumps(result), flush=True)
        with ImageHost(corpus) as host:
            print("status latency under 50 pollers…", flush=True)
            report["status_under_50_pollers"] = status_under_pollers(
                stack, host, arguments.per_product, arguments.pollers_images
            )
            print(f"accepting a {arguments.accept_products}-product CSV…", flush=True)
            report["accept_seconds"] = {
                str(arguments.accept_products): accept_time(stack, host, arguments.accept_products)
            }
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "latest.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (arguments.out / "latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
