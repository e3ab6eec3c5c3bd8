"""Starting the real service (supervisord, embedded MongoDB and Redis, API, workers) for tests."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from pymongo import MongoClient

from local_stack.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]

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


@dataclass
class Stack:
    base_url: str
    data_dir: Path
    log_dir: Path
    process: subprocess.Popen

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"

    def environment(self) -> dict[str, str]:
        """The MongoDB and Redis URLs the stack's programs were given."""
        config = (self.data_dir / "run" / "supervisord.conf").read_text()
        line = next(l for l in config.splitlines() if l.startswith("environment="))
        pairs = line.removeprefix("environment=").split(",")
        return {k: v.strip('"') for k, v in (pair.split("=", 1) for pair in pairs)}

    def mongo(self) -> MongoClient:
        return MongoClient(self.environment()["MONGODB_URL"], tz_aware=True)

    def supervisorctl(self, *arguments: str) -> str:
        config = self.data_dir / "run" / "supervisord.conf"
        result = subprocess.run([str(Path(sys.executable).with_name("supervisorctl")), "-c", str(config), *arguments],
                                capture_output=True, text=True, timeout=60)
        return result.stdout.strip()

    def pid_of(self, program: str) -> int:
        return int(self.supervisorctl("pid", program))

    def logs(self, program: str) -> str:
        path = self.log_dir / f"{program}.log"
        return path.read_text(errors="replace") if path.exists() else ""


def wait_until(condition, timeout: float, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def ready(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def launch(data_dir: Path, log_dir: Path, port: int, extra: dict[str, str]) -> subprocess.Popen:
    environment = {**os.environ, **TEST_ENVIRONMENT, **extra,
                   "DATA_DIR": str(data_dir), "API_PORT": str(port), "API_HOST": "127.0.0.1"}
    for name in ("MONGODB_URL", "REDIS_URL", "PUBLIC_BASE_URL"):
        environment.pop(name, None)
    return subprocess.Popen([sys.executable, "-m", "local_stack", "--log-dir", str(log_dir)],
                            cwd=PROJECT_ROOT, env=environment, start_new_session=True,
                            stdout=(log_dir.parent / "launcher.log").open("ab"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def start_stack(root: Path, extra: dict[str, str] | None = None) -> Iterator[Stack]:
    data_dir, log_dir = root / "data", root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    process = launch(data_dir, log_dir, port, extra or {})
    stack = Stack(base_url=base_url, data_dir=data_dir, log_dir=log_dir, process=process)
    try:
        wait_until(lambda: ready(base_url), 90, message="the stack to be ready")
        yield stack
    finally:
        stop(process)
