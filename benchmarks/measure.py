"""What the benchmark watches while the service works: memory, CPU, status latency."""

import statistics
import threading
import time
from dataclasses import dataclass, field

import httpx
import psutil


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_rss(pid: int) -> int:
    total = 0
    for process in process_tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
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
    interval: float = 0.1
    peaks: dict[str, int] = field(default_factory=dict)

    def __enter__(self) -> "PeakMemory":
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self) -> None:
        while not self.stopped.wait(self.interval):
            for name, pid in self.pids.items():
                self.peaks[name] = max(self.peaks.get(name, 0), tree_rss(pid))

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


@dataclass
class Pollers:
    """N clients polling a request's status, each every `pause` seconds, for at most `limit` seconds."""

    url: str
    count: int = 50
    pause: float = 0.1
    limit: float = 120.0
    latencies: list[float] = field(default_factory=list)

    def poll(self) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(timeout=30) as client:
            while not self.stopped.is_set() and time.monotonic() < deadline:
                started = time.perf_counter()
                client.get(self.url)
                self.latencies.append(time.perf_counter() - started)
                self.stopped.wait(self.pause)

    def __enter__(self) -> "Pollers":
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self.poll, daemon=True) for _ in range(self.count)]
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join()

    def summary(self) -> dict[str, float]:
        return {"requests": len(self.latencies),
                "p50_ms": 1000 * statistics.median(self.latencies) if self.latencies else float("nan"),
                "p99_ms": 1000 * percentile(self.latencies, 0.99)}
