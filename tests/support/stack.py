"""The real service (supervisord, embedded MongoDB and Redis, API, workers) with test timings."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from local_stack.running import PROJECT_ROOT, RunningStack, ready, running_stack, wait_until

__all__ = ["PROJECT_ROOT", "TEST_ENVIRONMENT", "Stack", "ready", "start_stack", "wait_until"]

# Short timings so that recovery paths finish within a test.
TEST_ENVIRONMENT = {
    "ALLOW_PRIVATE_NETWORKS": "true",
    "WORKER_CONCURRENCY": "2",
    "PRODUCT_LEASE_SECONDS": "6",
    "SWEEP_INTERVAL_SECONDS": "1",
    "STALL_SECONDS": "8",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_MAX_ATTEMPTS": "4",
    "WEBHOOK_TIMEOUT_SECONDS": "3",
    "DOWNLOAD_TOTAL_TIMEOUT_SECONDS": "5",
    "DOWNLOAD_CONNECT_TIMEOUT_SECONDS": "2",
    "DOWNLOAD_BACKOFF_SECONDS": "0.05",
}


Stack = RunningStack


@contextmanager
def start_stack(root: Path, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    with running_stack(root, {**TEST_ENVIRONMENT, **(extra or {})}) as running:
        yield running
