"""The benchmark as the service's client: CSVs, uploads, waiting for a request to be final, its stored files."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.image_host import ImageHost
from shared.models import FINAL_STATUS_VALUES

# While outputs are still being stored the request cannot be final: a coarse poll then keeps
# the benchmark's own load on the API it measures small. From the last output on, the
# request's final state is seen within a fine poll of the service showing it.
COARSE_POLL_S = 0.25
FINE_POLL_S = 0.05
# No new output for this long (the last images failing, say) may also mean the end is near.
QUIET_S = 1.0


def product_csv(host: ImageHost, run: str, products: int, per_product: int) -> str:
    lines = ["S. No.,Product Name,Input Image Urls"]
    for product in range(products):
        urls = ",".join(host.url(run, product * per_product + k) for k in range(per_product))
        lines.append(f'{product + 1},SKU{product + 1},"{urls}"')
    return "\n".join(lines) + "\n"


def upload(api: str, csv_text: str, webhook_url: str | None = None) -> tuple[str, float]:
    """The new request's id, and the seconds the upload took."""
    data = {"webhook_url": webhook_url} if webhook_url else None
    started = time.perf_counter()
    response = httpx.post(
        f"{api}/upload", files={"file": ("bench.csv", csv_text.encode(), "text/csv")}, data=data, timeout=120
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.json()["request_id"], elapsed


def stored_outputs(folder: Path) -> list[os.DirEntry[str]]:
    """The request's stored output files; names starting with a dot are still being written."""
    try:
        return [entry for entry in os.scandir(folder) if not entry.name.startswith(".")]
    except FileNotFoundError:
        return []


def last_stored_at(folder: Path) -> float | None:
    """When (time.time()) the request's last output file was stored, or None if none was."""
    outputs = stored_outputs(folder)
    return max(entry.stat().st_mtime for entry in outputs) if outputs else None


def poll_interval(stored: int, expected: int, quiet_for: float) -> float:
    return FINE_POLL_S if stored >= expected or quiet_for >= QUIET_S else COARSE_POLL_S


@dataclass
class Final:
    """A request's first status answer in a final state, and when (time.time()) it arrived."""

    status: dict
    seen_at: float


def wait_final(api: str, request_id: str, folder: Path, images: int, limit: float = 3600) -> Final:
    """Poll the request's status (one product a page, the cheapest answer) until it is final."""
    deadline = time.monotonic() + limit
    stored, changed = 0, time.monotonic()
    with httpx.Client(timeout=60) as client:
        while time.monotonic() < deadline:
            body = client.get(f"{api}/status/{request_id}", params={"limit": 1}).json()
            if body["status"] in FINAL_STATUS_VALUES:
                return Final(body, time.time())
            now_stored = len(stored_outputs(folder))
            if now_stored != stored:
                stored, changed = now_stored, time.monotonic()
            time.sleep(poll_interval(stored, images, time.monotonic() - changed))
    raise TimeoutError(f"request {request_id} not final after {limit} s")


def since(moment: float | None, start: float | None) -> float | None:
    """Seconds from `start` to `moment`, None if either is unknown."""
    return None if moment is None or start is None else moment - start
