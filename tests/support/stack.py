"""The real service (supervisord, embedded MongoDB and Redis, API, workers) with test timings."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from local_stack.running import PROJECT_ROOT, RunningStack, ready, running_stack, stop, wait_until
from tests.support.hosts import kill_tree

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
    # Tests of everything but re-imports fetch the same URLs from the same host in whatever order
    # pytest runs them: each request is processed from scratch, so no test sees what another left.
    # The re-import tests run a stack of their own with the memory on (test_reimports.py).
    "REUSE_OUTPUTS": "false",
}


Stack = RunningStack


def kill(process: subprocess.Popen[bytes]) -> None:
    """Tests have no work to let finish: a stack killed at once ends the test 5 to 10 s sooner."""
    if process.poll() is None:
        kill_tree(psutil.Process(process.pid))


@contextmanager
def start_stack(root: Path, extra: dict[str, str] | None = None, *, graceful_stop: bool = False) -> Iterator[Stack]:
    """The stack with test timings; `graceful_stop` stops it as Ctrl-C would, rather than killing it."""
    with running_stack(root, {**TEST_ENVIRONMENT, **(extra or {})}, stop if graceful_stop else kill) as running:
        yield running
