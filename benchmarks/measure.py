"""What the benchmark watches while the service works: memory, CPU, status latency."""

import asyncio
import contextlib
import multiprocessing
import os
import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil

from shared.models import FINAL_STATUS_VALUES


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_pss(pid: int) -> int:
    """Proportional set size of a process tree: forked workers share their parent's pages,
    which plain RSS would count once per process."""
    total = 0
    for process in process_tree(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += process.memory_full_info().pss
    return total


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for process in process_tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class PeakMemory:
    """Samples the resident memory of process trees until stopped; keeps the peaks."""

    pids: dict[str, int]
    interval: float = 0.25
    peaks: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> "PeakMemory":
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while not self.stopped.wait(self.interval):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), tree_pss(pid))

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def poll(
    client: httpx.AsyncClient, url: str, pause: float, deadline: float, latencies: list[float], start_after: float
) -> None:
    await asyncio.sleep(start_after)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await client.get(url)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200 or response.json()["status"] in FINAL_STATUS_VALUES:
            return
        await asyncio.sleep(pause)


async def pollers(url: str, count: int, pause: float, limit: float) -> list[float]:
    latencies: list[float] = []
    deadline = time.monotonic() + limit
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Independent clients: their polls are spread over the interval, not fired in one burst.
        await asyncio.gather(*(poll(client, url, pause, deadline, latencies, pause * i / count) for i in range(count)))
    return latencies


def run_pollers(url: str, count: int, pause: float, limit: float, results: multiprocessing.Queue) -> None:
    # A session of its own, so the kernel schedules these clients as a separate group, as if
    # they ran elsewhere, instead of sharing a group with the benchmark's image host.
    os.setsid()
    results.put(asyncio.run(pollers(url, count, pause, limit)))


def status_latency(url: str, count: int = 50, pause: float = 0.5, limit: float = 600.0) -> dict[str, float]:
    """`count` clients polling a status URL every `pause` s until the request is final (at most `limit` s).

    They run in a process of their own, so the benchmark's other threads do not slow them
    down and inflate the figures.
    """
    results: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=run_pollers, args=(url, count, pause, limit, results))
    process.start()
    latencies = results.get(timeout=limit + 60)
    process.join()
    return {
        "pollers": count,
        "interval_s": pause,
        "requests": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }
