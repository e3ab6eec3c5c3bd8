"""`make bench`: end-to-end throughput of the service against the Pillow ceiling, in one run.

For each corpus (`--corpora`: "mixed", the original one, and "photos", ordinary 0.5–2 MP product
photos) it generates the fixed-seed images, measures the ceiling — Pillow alone on the same
images, one process per core — then serves them from a local image host with a set latency
and uploads CSVs of P products × K images through the public API of the service, started
exactly as `make run` does (embedded MongoDB and Redis), until each request is final. Each
request names a local webhook receiver, so the time from its last image stored to it being
final is measured both in its status and by its webhook. Then a burst: many small requests
at once under 50 pollers, with what each program of the stack costs meanwhile.
Results go to benchmarks/results/latest.json and latest.md.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from benchmarks import ceiling
from benchmarks.burst import Burst, run_burst
from benchmarks.corpus import CORPORA, CorpusImage, CorpusSpec, burst_spec, formats
from benchmarks.image_host import ImageHost
from benchmarks.measure import PeakMemory, cpu_shares, cpu_snapshot, percentile, status_latency, wait_until_idle
from benchmarks.reimport import run_reimport
from benchmarks.report import markdown
from benchmarks.service import last_stored_at, product_csv, since, stored_outputs, upload, wait_final
from benchmarks.sharing import owners_share, small_alone, small_behind_large
from benchmarks.webhook_receiver import WEBHOOK_WAIT_S, WebhookReceiver
from benchmarks.worker_host import measure_worker_host
from local_stack.running import RunningStack, running_stack

RESULTS = Path(__file__).resolve().parent / "results"
# The programs whose CPU the benchmark reports; those of the stack that do the work of a request.
PROGRAMS = ("api", "worker", "control", "webhooks", "mongodb", "redis")
# The ceiling decodes and encodes at least this many images (the mixed corpus 20 times over),
# enough for a steady rate whatever the corpus.
CEILING_IMAGES = 380
# How long the acceptance test waits for its request's first image stored.
FIRST_IMAGE_WAIT_S = 120


def image_latencies(
    stack: RunningStack, host: ImageHost, run: str, request_id: str, products: int, per_product: int
) -> tuple[list[float], int]:
    """Seconds from the image host seeing the download to the output file being stored; and output bytes."""
    folder = stack.data_dir / "media" / request_id
    arrivals = host.arrivals  # fetched from the host's process: once, not per image
    latencies, output_bytes = [], 0
    for product in range(products):
        for k in range(per_product):
            index = product * per_product + k
            stored = list(folder.glob(f"{product + 1}-{k}.*"))
            arrived = arrivals.get(f"/img/{index % len(host.corpus)}/{run}-{index}")
            if stored and arrived:
                stat = stored[0].stat()
                latencies.append(stat.st_mtime - arrived)
                output_bytes += stat.st_size
    return latencies, output_bytes


def run_request(
    stack: RunningStack,
    host: ImageHost,
    webhook: WebhookReceiver,
    pids: dict[str, int],
    run: str,
    images: int,
    per_product: int,
) -> dict:
    products = images // per_product
    indexes = range(products * per_product)
    # The image host too: in a process of its own, as a real one would be on another machine.
    watched = {**pids, "image_host": host.pid}
    cpu_before = cpu_snapshot(watched)
    with PeakMemory({name: pids[name] for name in ("api", "worker")}) as memory:
        started = time.perf_counter()
        request_id, _ = upload(stack.api, product_csv(host, run, products, per_product), webhook.url)
        folder = stack.data_dir / "media" / request_id
        final = wait_final(stack.api, request_id, folder, len(indexes))
        wall = time.perf_counter() - started
    shares = cpu_shares(cpu_before, cpu_snapshot(watched), wall)
    stored_at = last_stored_at(folder)
    webhook_at = webhook.wait_for(request_id, WEBHOOK_WAIT_S)
    latencies, output_bytes = image_latencies(stack, host, run, request_id, products, per_product)
    input_bytes = sum(len(host.image_of(i).data) for i in indexes)
    megapixels = sum(host.image_of(i).megapixels for i in indexes)
    return {
        "images": len(indexes),
        "products": products,
        "latency_ms": round(host.latency * 1000),
        "status": final.status["status"],
        "images_failed": final.status["progress"]["images_failed"],
        "seconds": wall,
        "images_per_second": len(indexes) / wall,
        "megapixels_per_second": megapixels / wall,
        "image_latency_p50_s": percentile(latencies, 0.5),
        "image_latency_p95_s": percentile(latencies, 0.95),
        # From the mtime of the request's last output file to the first status poll that saw
        # the request final, and to its webhook reaching the receiver.
        "last_stored_to_final_status_s": since(final.seen_at, stored_at),
        "last_stored_to_webhook_s": since(webhook_at, stored_at),
        "output_to_input_bytes": output_bytes / input_bytes,
        "worker_cpu_utilisation": shares["worker"],
        "cpu_share": shares,
        "peak_memory_mb": {name: peak / 2**20 for name, peak in memory.peaks.items()},
    }


def measure_ceiling(corpus: list[CorpusImage], pids: dict[str, int], at_least: int) -> dict[str, float]:
    """Pillow alone on the corpus (whole, as often as needed for `at_least` images), while the stack idles
    beside it: its share of the machine meanwhile is kept, to show it took none of the ceiling's."""
    cycle = [image.data for image in corpus] * -(-at_least // len(corpus))
    wait_until_idle(pids)
    before, started = cpu_snapshot(pids), time.perf_counter()
    limits = {
        "plain_pillow_images_per_second": ceiling.images_per_second(cycle, ceiling.plain_pillow),
        "service_codec_images_per_second": ceiling.images_per_second(cycle, ceiling.service_codec),
    }
    idle = cpu_shares(before, cpu_snapshot(pids), time.perf_counter() - started)
    return {**limits, "stack_cpu_share": sum(idle.values())}


def describe(spec: CorpusSpec, corpus: list[CorpusImage]) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "images": len(corpus),
        "formats": formats(corpus),
        "mean_megapixels": sum(image.megapixels for image in corpus) / len(corpus),
        "megapixels": [round(image.megapixels, 2) for image in corpus],
    }


def with_ratios(result: dict, limits: dict[str, float]) -> dict:
    rate = result["images_per_second"]
    return {
        **result,
        "ratio_to_ceiling": rate / limits["plain_pillow_images_per_second"] if rate else None,
        "ratio_to_codec_ceiling": rate / limits["service_codec_images_per_second"] if rate else None,
    }


def measure_corpus(
    stack: RunningStack,
    webhook: WebhookReceiver,
    pids: dict[str, int],
    spec: CorpusSpec,
    corpus: list[CorpusImage],
    arguments: argparse.Namespace,
) -> dict:
    """The corpus's ceiling, then its runs at every latency × size."""
    print(f"{spec.name}: measuring the Pillow ceiling…", flush=True)
    limits = measure_ceiling(corpus, pids, arguments.ceiling_images)
    section = {"corpus": describe(spec, corpus), "ceiling": limits, "runs": []}
    for latency_ms in arguments.latencies:
        with ImageHost(corpus, latency_ms / 1000, arguments.bandwidth) as host:
            for images in arguments.sizes:
                print(f"{spec.name}: {images} images at {latency_ms} ms…", flush=True)
                run = f"{spec.name}-n{images}-l{latency_ms}"
                result = run_request(stack, host, webhook, pids, run, images, arguments.per_product)
                section["runs"].append(with_ratios(result, limits))
                print(json.dumps(section["runs"][-1]), flush=True)
    return section


def measure_reimports(
    stack: RunningStack, pids: dict[str, int], name: str, corpus: list[CorpusImage], arguments: argparse.Namespace
) -> list[dict]:
    """The same catalogue uploaded twice, from a host that sends validators and from one that sends none."""
    runs = []
    for validators in (True, False):
        with ImageHost(corpus, arguments.reimport_latency / 1000, validators=validators) as host:
            kind = "with validators" if validators else "without validators"
            print(f"{name}: re-import of {arguments.reimport_images} images {kind}…", flush=True)
            run = f"{name}-reimport-{'etag' if validators else 'plain'}"
            runs.append(run_reimport(stack, host, pids, run, arguments.reimport_images, arguments.per_product))
            print(json.dumps(runs[-1]), flush=True)
    return runs


SHARING_KEYS = ("bench-owner-a", "bench-owner-b")


def measure_sharing(environment: dict[str, str], corpus: list[CorpusImage], arguments: argparse.Namespace) -> dict:
    """On a stack of its own with two API keys: a small request alone and behind a large one, and
    one owner's request beside another's five."""
    keyed = {**environment, "API_KEYS": ",".join(SHARING_KEYS)}
    with (
        tempfile.TemporaryDirectory(prefix="bench-sharing-") as root,
        running_stack(Path(root), keyed) as stack,
        ImageHost(corpus) as host,
    ):
        api, per_product = stack.api, arguments.per_product
        print("sharing: a small request alone…", flush=True)
        alone = small_alone(api, host, per_product, key=SHARING_KEYS[0])
        print(f"sharing: a small request behind {arguments.sharing_large} images…", flush=True)
        behind = small_behind_large(api, host, per_product, arguments.sharing_large, key=SHARING_KEYS[0])
        print(f"sharing: one owner's request beside another's five of {arguments.sharing_owner_images}…", flush=True)
        shares = owners_share(api, host, per_product, arguments.sharing_owner_images, SHARING_KEYS)
    return {"small_alone_seconds": alone, "small_behind_large": behind, "owners": shares}


def measure_burst(
    stack: RunningStack, webhook: WebhookReceiver, pids: dict[str, int], burst: Burst, ceiling_images: int
) -> dict:
    spec = burst_spec(burst.products)
    print(f"burst: generating {burst.products} products' images…", flush=True)
    corpus = spec.generate()
    print("burst: measuring the Pillow ceiling…", flush=True)
    limits = measure_ceiling(corpus, pids, ceiling_images)
    print(f"burst: {burst.requests} requests of {burst.products} products at once…", flush=True)
    with ImageHost(corpus) as host:
        result = run_burst(stack, host, webhook, pids, burst)
    return {"corpus": describe(spec, corpus), "ceiling": limits, **with_ratios(result, limits)}


def status_under_pollers(stack: RunningStack, host: ImageHost, per_product: int, images: int) -> dict:
    products = images // per_product
    request_id, _ = upload(stack.api, product_csv(host, "pollers", products, per_product))
    return status_latency(f"{stack.api}/status/{request_id}", count=50)


def accept_time(stack: RunningStack, host: ImageHost, products: int) -> tuple[float, float | None]:
    """Seconds to accept a CSV of one-image products, and from its upload to its first image stored."""
    lines = ["S. No.,Product Name,Input Image Urls"]
    lines += [f"{i},SKU{i},{host.url('accept', i)}" for i in range(1, products + 1)]
    started = time.time()
    request_id, elapsed = upload(stack.api, "\n".join(lines) + "\n")
    folder = stack.data_dir / "media" / request_id
    while not (stored := stored_outputs(folder)) and time.time() - started < FIRST_IMAGE_WAIT_S:
        time.sleep(0.01)
    first = min((entry.stat().st_mtime for entry in stored), default=None)
    return elapsed, None if first is None else first - started


def numbers(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def corpus_names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CORPORA]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"corpora are {', '.join(CORPORA)}; not {', '.join(unknown) or 'none'}")
    return names


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpora", type=corpus_names, default=list(CORPORA), help="comma-separated: mixed,photos")
    parser.add_argument("--sizes", type=numbers, default=[300, 1000, 3000], help="images per request, comma-separated")
    parser.add_argument("--latencies", type=numbers, default=[0, 200], help="image host latency in ms, comma-separated")
    parser.add_argument("--per-product", type=int, default=5, help="images per product")
    parser.add_argument("--bandwidth", type=float, default=None, help="bytes/s per connection (default: unlimited)")
    parser.add_argument("--pollers-images", type=int, default=1000, help="images in the request polled by 50 clients")
    parser.add_argument(
        "--accept-products", type=int, default=10_000, help="products in the CSV whose acceptance is timed"
    )
    parser.add_argument(
        "--reimport-images", type=int, default=1000, help="images in the catalogue uploaded twice (0: no re-import)"
    )
    parser.add_argument("--reimport-latency", type=int, default=0, help="image host latency in the re-import, ms")
    parser.add_argument(
        "--sharing-large", type=int, default=2000, help="images of the request a small one follows (0: no sharing)"
    )
    parser.add_argument(
        "--sharing-owner-images", type=int, default=500, help="images of each request in the owners' share run"
    )
    parser.add_argument(
        "--worker-host-images",
        type=int,
        default=1000,
        help="images through a worker host on cores of its own (0: none)",
    )
    parser.add_argument("--burst-requests", type=int, default=30, help="requests uploaded at once (0: no burst)")
    parser.add_argument("--burst-products", type=int, default=10, help="products per burst request, 2 images each")
    parser.add_argument("--burst-pollers", type=int, default=50, help="clients polling the burst's requests")
    parser.add_argument(
        "--ceiling-images", type=int, default=CEILING_IMAGES, help="images each ceiling measurement works through"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    report: dict = {"cores": os.cpu_count(), "per_product": arguments.per_product, "corpora": {}}
    environment = {
        "ALLOW_PRIVATE_NETWORKS": "true",
        # Every poller and upload comes from this one address: the rate limits would measure themselves.
        "RATE_LIMIT_UPLOADS_PER_MINUTE": "0",
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "0",
        **{k: v for k, v in os.environ.items() if k in ("WORKER_CONCURRENCY", "DOWNLOAD_CONCURRENCY")},
    }
    with (
        tempfile.TemporaryDirectory(prefix="bench-") as root,
        running_stack(Path(root), environment) as stack,
        WebhookReceiver() as webhook,
    ):
        pids = {name: pid for name in PROGRAMS if (pid := stack.pid_of(name))}
        corpora = {}
        for name in arguments.corpora:
            print(f"{name}: generating the corpus…", flush=True)
            corpora[name] = CORPORA[name].generate()
            report["corpora"][name] = measure_corpus(stack, webhook, pids, CORPORA[name], corpora[name], arguments)
            if arguments.reimport_images:
                report["corpora"][name]["reimports"] = measure_reimports(stack, pids, name, corpora[name], arguments)
        # Before the acceptance test, whose 10,000 products the workers then start on.
        if arguments.burst_requests and arguments.burst_products:
            burst = Burst(arguments.burst_requests, arguments.burst_products, arguments.burst_pollers)
            report["burst"] = measure_burst(stack, webhook, pids, burst, arguments.ceiling_images)
            print(json.dumps(report["burst"]), flush=True)
        first = arguments.corpora[0]
        if arguments.sharing_large:
            report["sharing"] = {**measure_sharing(environment, corpora[first], arguments), "corpus": first}
            print(json.dumps(report["sharing"]), flush=True)
        with ImageHost(corpora[first]) as host:
            print(f"status latency under 50 pollers ({first})…", flush=True)
            report["status_under_50_pollers"] = {
                **status_under_pollers(stack, host, arguments.per_product, arguments.pollers_images),
                "corpus": first,
            }
            print(f"accepting a {arguments.accept_products}-product CSV…", flush=True)
            accepted, first_image = accept_time(stack, host, arguments.accept_products)
            report["accept_seconds"] = {str(arguments.accept_products): accepted}
            report["accept_first_image_seconds"] = {str(arguments.accept_products): first_image}
    # Once this stack is stopped: its programs are not pinned, and the worker host is to be alone
    # on its cores (idle after a full run's images, they took about 2 % of a core between them).
    if arguments.worker_host_images:
        report["worker_host"] = {
            **measure_worker_host(corpora[first], environment, arguments.worker_host_images, arguments.per_product),
            "corpus": first,
        }
        print(json.dumps(report["worker_host"]), flush=True)
    arguments.out.mkdir(parents=True, exist_ok=True)
    (arguments.out / "latest.json").write_text(json.dumps(report, indent=2))
    table = markdown(report)
    (arguments.out / "latest.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
