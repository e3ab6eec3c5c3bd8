"""The burst: many small requests uploaded at once and polled by many clients until every one is final."""

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from benchmarks.image_host import ImageHost
from benchmarks.measure import PeakMemory, cpu_shares, cpu_snapshot, latency_summary, poll_statuses, poller_targets
from benchmarks.service import last_stored_at, product_csv, since, upload
from benchmarks.webhook_receiver import WEBHOOK_WAIT_S, WebhookReceiver
from local_stack.running import RunningStack

# Images per product: corpus.BURST_PRODUCT, a JPEG and a PNG cut-out.
PER_PRODUCT = 2


@dataclass(frozen=True)
class Burst:
    requests: int
    products: int
    pollers: int = 50
    interval_s: float = 0.5

    @property
    def images(self) -> int:
        return self.requests * self.products * PER_PRODUCT


@dataclass(frozen=True)
class Sent:
    request_id: str
    sent_at: float  # time.time(), comparable with the pollers' and the webhook receiver's
    seconds: float


def upload_at_once(api: str, csvs: list[str], webhook_url: str) -> list[Sent]:
    """Each CSV uploaded by a thread of its own, all released together, as independent clients would."""
    start = threading.Barrier(len(csvs), timeout=60)

    def send(csv_text: str) -> Sent:
        start.wait()
        sent_at = time.time()
        request_id, seconds = upload(api, csv_text, webhook_url)
        return Sent(request_id, sent_at, seconds)

    with ThreadPoolExecutor(len(csvs)) as threads:
        return list(threads.map(send, csvs))


def spread(values: list[float | None]) -> dict[str, float | None]:
    """p50 and max of the known values, and how many are missing (a webhook that never came, say)."""
    known = [v for v in values if v is not None]
    return {
        "p50": statistics.median(known) if known else None,
        "max": max(known) if known else None,
        "missing": len(values) - len(known),
    }


def images_failed(api: str, request_ids: list[str]) -> int:
    with httpx.Client(timeout=60) as client:
        return sum(
            client.get(f"{api}/status/{rid}", params={"limit": 1}).json()["progress"]["images_failed"]
            for rid in request_ids
        )


def run_burst(
    stack: RunningStack, host: ImageHost, webhook: WebhookReceiver, pids: dict[str, int], burst: Burst
) -> dict:
    csvs = [product_csv(host, f"burst-{r}", burst.products, PER_PRODUCT) for r in range(burst.requests)]
    watched = {**pids, "image_host": host.pid}
    with PeakMemory({"worker": pids["worker"]}) as memory:
        cpu_before, cpu_from = cpu_snapshot(watched), time.time()
        sent = upload_at_once(stack.api, csvs, webhook.url)
        urls = [f"{stack.api}/status/{s.request_id}" for s in sent]
        polled = poll_statuses(urls, burst.pollers, burst.interval_s)
        cpu_after, cpu_to = cpu_snapshot(watched), time.time()
    request_ids = [s.request_id for s in sent]
    first_sent = min(s.sent_at for s in sent)
    final_at = [polled.final_at.get(url) for url in urls]
    webhook_at = [webhook.wait_for(rid, WEBHOOK_WAIT_S) for rid in request_ids]
    stored_at = [last_stored_at(stack.data_dir / "media" / rid) for rid in request_ids]
    to_final = None if None in final_at else max(final_at) - first_sent
    to_webhook = None if None in webhook_at else max(webhook_at) - first_sent
    return {
        "requests": burst.requests,
        "products_per_request": burst.products,
        "images": burst.images,
        "images_failed": images_failed(stack.api, request_ids),
        "upload_seconds": spread([s.seconds for s in sent]),
        # As seen by the pollers, every `interval_s`: up to that much after the request was final.
        "seconds_to_last_final_status": to_final,
        "seconds_to_last_webhook": to_webhook,
        "images_per_second": burst.images / to_final if to_final else None,
        "status_under_pollers": latency_summary(
            polled.latencies, len(poller_targets(urls, burst.pollers)), burst.interval_s
        ),
        "last_stored_to_final_status_s": spread([since(f, s) for f, s in zip(final_at, stored_at, strict=True)]),
        "last_stored_to_webhook_s": spread([since(w, s) for w, s in zip(webhook_at, stored_at, strict=True)]),
        "cpu_share": cpu_shares(cpu_before, cpu_after, cpu_to - cpu_from),
        "peak_worker_pss_mb": memory.peaks.get("worker", 0) / 2**20,
    }
