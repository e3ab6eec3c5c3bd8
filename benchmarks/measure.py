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
    """Proportional set size of a process tree: processes share pages (libraries, a forked
    parent's memory), which plain RSS would count once per process."""
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


@dataclass
class Polled:
    """What the pollers saw: every answer's latency, and when (time.time()) each URL was first seen final."""

    latencies: list[float] = field(default_factory=list)
    final_at: dict[str, float] = field(default_factory=dict)


async def poll(
    client: httpx.AsyncClient, url: str, pause: float, deadline: float, polled: Polled, start_after: float
) -> None:
    await asyncio.sleep(start_after)
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = await client.get(url)
        polled.latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            return
        if response.json()["status"] in FINAL_STATUS_VALUES:
            polled.final_at.setdefault(url, time.time())
            return
        await asyncio.sleep(pause)


def poller_targets(urls: list[str], count: int) -> list[str]:
    """The URL of each of `count` pollers: spread evenly over the URLs, each polled by at least one."""
    return [urls[i % len(urls)] for i in range(max(count, len(urls)))]


async def pollers(urls: list[str], count: int, pause: float, limit: float) -> Polled:
    polled = Polled()
    deadline = time.monotonic() + limit
    targets = poller_targets(urls, count)
    limits = httpx.Limits(max_connections=len(targets))
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        # Independent clients: their polls are spread over the interval, not fired in one burst.
        await asyncio.gather(
            *(poll(client, url, pause, deadline, polled, pause * i / len(targets)) for i, url in enumerate(targets))
        )
    return polled


def run_pollers(urls: list[str], count: int, pause: float, limit: float, results: multiprocessing.Queue) -> None:
    # A session of its own, so the kernel schedules these clients as a separate group, as if
    # they ran elsewhere, instead of sharing a group with the benchmark's image host.
    os.setsid()
    results.put(asyncio.run(pollers(urls, count, pause, limit)))


def poll_statuses(urls: list[str], count: int = 50, pause: float = 0.5, limit: float = 600.0) -> Polled:
    """`count` clients polling status URLs every `pause` s until each request is final (at most `limit` s).

    They run in a process of their own, so the benchmark's other threads do not slow them
    down and inflate the figures.
    """
    results: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=run_pollers, args=(urls, count, pause, limit, results))
    process.start()
    polled = results.get(timeout=limit + 60)
    process.join()
    return polled


def latency_summary(latencies: list[float], count: int, pause: float) -> dict[str, float]:
    return {
        "pollers": count,
        "interval_s": pause,
        "requests": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * percentile(latencies, 0.99),
    }


def status_latency(
    urls: str | list[str], count: int = 50, pause: float = 0.5, limit: float = 600.0
) -> dict[str, float]:
    """Status latency under `count` pollers of one status URL or several (see poll_statuses)."""
    urls = [urls] if isinstance(urls, str) else urls
    polled = poll_statuses(urls, count, pause, limit)
    return latency_summary(polled.latencies, len(poller_targets(urls, count)), pause)


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each program's process tree."""
    return {name: tree_cpu_seconds(pid) for name, pid in pids.items()}


def cpu_shares(
    before: dict[str, float], after: dict[str, float], seconds: float, cores: int | None = None
) -> dict[str, float]:
    """Each program's share of the whole machine between two snapshots: 1.0 is every core busy all along."""
    capacity = seconds * (cores or os.cpu_count() or 1)
    return {name: (after[name] - before[name]) / capacity for name in before if name in after}


def wait_until_idle(pids: dict[str, int], share: float = 0.03, window: float = 1.0, limit: float = 60.0) -> float:
    """Wait until the programs together take under `share` of the machine over `window` s; that last share.

    The stack answers as soon as its servers do, while its workers may still be importing their
    code: a ceiling measured then would share its cores with them, and every ratio would flatter.
    """
    deadline = time.monotonic() + limit
    while True:
        before = cpu_snapshot(pids)
        time.sleep(window)
        busy = sum(cpu_shares(before, cpu_snapshot(pids), window).values())
        if busy < share or time.monotonic() > deadline:
            return busy
