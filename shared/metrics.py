"""The service's own Prometheus metrics, defined once, and how a host's metrics are gathered.

Each program of a host (the API, each Celery worker) records in a directory of its own,
its `PROMETHEUS_MULTIPROC_DIR` (prometheus_client's multiprocess mode: one file per process,
so another process can read them), all under one root. Whoever serves the
metrics (the API's /metrics, or the image worker on WORKER_METRICS_PORT on a host without an
API) merges every program directory under that root into one answer.
"""

import glob
import os
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

MULTIPROCESS_DIRECTORY = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if MULTIPROCESS_DIRECTORY:
    # prometheus_client writes each metric's file as the metric is created, below.
    Path(MULTIPROCESS_DIRECTORY).mkdir(parents=True, exist_ok=True)

NAMESPACE = "image_service"

REQUESTS_ACCEPTED = Counter("requests_accepted", "Uploads accepted", namespace=NAMESPACE)
REQUESTS_FINISHED = Counter("requests_finished", "Requests finished, by final status", ["status"], namespace=NAMESPACE)
IMAGES = Counter("images", "Images processed, by outcome: stored or failed", ["outcome"], namespace=NAMESPACE)
IMAGES_REUSED = Counter(
    "images_reused", "Images whose output was reused from an earlier request, by how: not_modified or unchanged",
    ["reuse"], namespace=NAMESPACE,
)  # fmt: skip
BYTES_IN = Counter("bytes_in", "Bytes of images downloaded", namespace=NAMESPACE)
BYTES_OUT = Counter("bytes_out", "Bytes of images stored", namespace=NAMESPACE)
IMAGE_STEP_SECONDS = Histogram(
    "image_step_seconds",
    "Time an image spent in a step: download (retries included), compress, store",
    ["step"],
    namespace=NAMESPACE,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
CPU_BY_STEP = Counter(
    "cpu_seconds_by_step",
    "CPU seconds of the workers by step: download, codec_handoff, codec, store, database, logging, metrics",
    ["step"],
    namespace=NAMESPACE,
)
STORAGE_REFUSALS = Counter(
    "storage_refusals", "Writes the storage refused (no space, a store down or answering 5xx); each is tried again",
    namespace=NAMESPACE,
)  # fmt: skip
WEBHOOK_ATTEMPTS = Counter(
    "webhook_attempts", "Webhook delivery attempts, by outcome: delivered, retry, given_up", ["outcome"],
    namespace=NAMESPACE,
)  # fmt: skip


class ProgramsCollector(Collector):
    """Every program directory under `root`, merged: counters and histograms summed over processes."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Iterable[Metric]:
        files = glob.glob(str(self.root / "*" / "*.db"))
        # The merge of one multiprocess directory, over every program's: prometheus_client leaves it untyped.
        metrics: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return metrics


def programs_root() -> Path | None:
    """The directory holding this host's program directories; None when metrics are per process."""
    return Path(MULTIPROCESS_DIRECTORY).parent if MULTIPROCESS_DIRECTORY else None


def programs_registry(root: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProgramsCollector(root))
    return registry


def forget_earlier_runs() -> None:
    """Remove the files of this program's earlier runs, keeping this process's own.

    Called once as the program starts: supervisord or Docker may start a
    program again, and its processes' totals then start again from zero. This process's
    files (written as the metrics were imported) stay, since it still writes to them.
    """
    if not MULTIPROCESS_DIRECTORY:
        return
    mine = f"_{os.getpid()}.db"
    for path in Path(MULTIPROCESS_DIRECTORY).glob("*.db"):
        if not path.name.endswith(mine):
            path.unlink(missing_ok=True)
