"""Sharing the workers: how long a small request takes behind large ones, and what share of the
workers an owner gets while another owner has five large requests under way.

Every figure comes from the public API: the requests' status, polled a few times a second, says
when each was final; their processing logs say when each image was finished, so the owners' shares
are counted image by image while both had work.
"""

import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from benchmarks.image_host import ImageHost
from benchmarks.service import product_csv
from shared.models import FINAL_STATUS_VALUES

POLL_S = 0.2
SMALL_IMAGES = 10
HEAD_START_S = 3.0


@dataclass
class Tracked:
    """A request under watch: when it was accepted, its images done at each poll, when it was final."""

    request_id: str
    images: int
    key: str | None
    accepted_at: float
    done: list[tuple[float, int]] = field(default_factory=list)  # (when polled, images done)
    final_at: float | None = None

    def seconds_to_final(self) -> float | None:
        return None if self.final_at is None else self.final_at - self.accepted_at


def headers(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def submit(api: str, host: ImageHost, run: str, images: int, per_product: int, key: str | None = None) -> Tracked:
    csv_text = product_csv(host, run, images // per_product, per_product)
    response = httpx.post(
        f"{api}/upload",
        files={"file": (f"{run}.csv", csv_text.encode(), "text/csv")},
        headers=headers(key),
        timeout=120,
    )
    response.raise_for_status()
    return Tracked(response.json()["request_id"], images, key, time.monotonic())


def follow(api: str, requests: list[Tracked], limit: float = 1800.0) -> None:
    """Poll every request until each is final, noting its images done at each poll."""
    deadline = time.monotonic() + limit
    with httpx.Client(timeout=60) as client:
        while any(r.final_at is None for r in requests):
            if time.monotonic() > deadline:
                raise TimeoutError("requests not final in time")
            for request in requests:
                if request.final_at is not None:
                    continue
                body = client.get(
                    f"{api}/status/{request.request_id}", params={"limit": 1}, headers=headers(request.key)
                ).json()
                now = time.monotonic()
                request.done.append((now, body["progress"]["images_done"]))
                if body["status"] in FINAL_STATUS_VALUES:
                    request.final_at = now
            time.sleep(POLL_S)


def small_alone(api: str, host: ImageHost, per_product: int, key: str | None = None, runs: int = 3) -> float:
    """The median seconds a small request takes to final with nothing else running."""
    seconds = []
    for attempt in range(runs):
        small = submit(api, host, f"alone-{attempt}-{time.time()}", SMALL_IMAGES, per_product, key)
        follow(api, [small])
        seconds.append(small.seconds_to_final() or 0.0)
    return statistics.median(seconds)


def small_behind_large(api: str, host: ImageHost, per_product: int, large_images: int, key: str | None = None) -> dict:
    """A small request uploaded while a large one (the same owner's) runs: its seconds to final."""
    large = submit(api, host, f"large-{time.time()}", large_images, per_product, key)
    time.sleep(HEAD_START_S)
    small = submit(api, host, f"small-{time.time()}", SMALL_IMAGES, per_product, key)
    follow(api, [small])
    large_done_when_small_final = large.done[-1][1] if large.done else None
    follow(api, [large])
    return {
        "large_images": large_images,
        "small_seconds": small.seconds_to_final(),
        "large_seconds": large.seconds_to_final(),
        "large_images_per_second": large_images / (large.seconds_to_final() or 1),
        "large_done_when_small_final": large_done_when_small_final,
    }


def finished_times(api: str, request: Tracked) -> list[float]:
    """When (epoch seconds) each image of the finished request was finished, from its processing log."""
    times: list[float] = []
    with httpx.Client(timeout=60, headers=headers(request.key)) as client:
        for offset in range(0, request.images, 1000):
            page = client.get(f"{api}/status/{request.request_id}/images", params={"offset": offset, "limit": 1000})
            times += [
                datetime.fromisoformat(entry["finished_at"]).timestamp()
                for entry in page.json()["images"]
                if entry["finished_at"]
            ]
    return times


def owners_share(api: str, host: ImageHost, per_product: int, images: int, keys: tuple[str, str]) -> dict:
    """Owner A uploads five large requests; a few seconds later owner B uploads one. From B's first
    image finished to its last (each image's `finished_at`, from the processing log), the share of
    the images finished that were B's."""
    many, one = keys
    a_requests = [submit(api, host, f"a{i}-{time.time()}", images, per_product, many) for i in range(5)]
    time.sleep(HEAD_START_S)
    b_request = submit(api, host, f"b-{time.time()}", images, per_product, one)
    follow(api, [*a_requests, b_request])
    b_times = finished_times(api, b_request)
    start, end = min(b_times), max(b_times)
    a_done = sum(start <= moment <= end for request in a_requests for moment in finished_times(api, request))
    b_done = len(b_times)
    return {
        "images_per_request": images,
        "window_seconds": end - start,
        "b_images_in_window": b_done,
        "a_images_in_window": a_done,
        "b_share": b_done / (a_done + b_done) if a_done + b_done else None,
        "b_seconds": b_request.seconds_to_final(),
    }
