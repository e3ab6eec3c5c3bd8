"""Starting and stopping the whole stack, or a worker host, from another program (the tests and
the benchmark).

It runs `python -m local_stack` — what `make run` (or `make worker`) runs — in its own session,
with its programs' logs in files, on a free API port.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pymongo import MongoClient

from local_stack.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


@dataclass
class RunningHost:
    """Programs under one supervisord, as `make run` or `make worker` starts them."""

    data_dir: Path
    log_dir: Path
    process: subprocess.Popen[bytes]

    @property
    def config(self) -> Path:
        return self.data_dir / "run" / "supervisord.conf"

    def environment(self) -> dict[str, str]:
        """The environment supervisord gives its programs (the embedded servers' URLs among it)."""
        line = next(row for row in self.config.read_text().splitlines() if row.startswith("environment="))
        pairs = line.removeprefix("environment=").split(",")
        return {key: value.strip('"') for key, value in (pair.split("=", 1) for pair in pairs)}

    def mongo(self) -> MongoClient[dict[str, Any]]:
        return MongoClient(self.environment()["MONGODB_URL"], tz_aware=True)

    def supervisorctl(self, *arguments: str) -> str:
        command = [str(Path(sys.executable).with_name("supervisorctl")), "-c", str(self.config), *arguments]
        return subprocess.run(command, capture_output=True, text=True, timeout=90).stdout.strip()

    def pid_of(self, program: str) -> int:
        answer = self.supervisorctl("pid", program)
        return int(answer) if answer.isdigit() else 0


@dataclass
class RunningStack(RunningHost):
    base_url: str

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"


def wait_until(condition: Callable[[], T], timeout: float, interval: float = 0.2, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def ready(base_url: str) -> bool:
    return readiness(base_url) is None


def readiness(base_url: str) -> str | None:
    """None once the stack is ready; else what /readyz answered, or why it did not."""
    try:
        answer = httpx.get(f"{base_url}/readyz", timeout=2)
    except httpx.HTTPError as error:
        return f"no answer ({type(error).__name__})"
    return None if answer.status_code == 200 else f"{answer.status_code} {answer.text[:300]}"


def launch(
    data_dir: Path, log_dir: Path, environment: dict[str, str], role: str = "all", cpus: set[int] | None = None
) -> subprocess.Popen[bytes]:
    """`python -m local_stack ROLE`; on `cpus` only (with every program it starts), when given."""
    full = {**os.environ, **environment, "DATA_DIR": str(data_dir)}
    for name in ("MONGODB_URL", "REDIS_URL", "PUBLIC_BASE_URL"):
        if name not in environment:
            full.pop(name, None)
    # taskset pins the launcher before it runs, and every program it starts inherits the cores.
    pinned = ["taskset", "--cpu-list", ",".join(map(str, sorted(cpus)))] if cpus else []
    return subprocess.Popen(
        [*pinned, sys.executable, "-m", "local_stack", role, "--log-dir", str(log_dir)],
        cwd=PROJECT_ROOT,
        env=full,
        start_new_session=True,
        stdout=(log_dir.parent / "launcher.log").open("ab"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_stack(
    root: Path,
    environment: dict[str, str],
    stop: Callable[[subprocess.Popen[bytes]], None] = stop,
    cpus: set[int] | None = None,
) -> Iterator[RunningStack]:
    """The stack, ready; `stop` ends it (by default as Ctrl-C would, letting every program finish)."""
    data_dir, log_dir = root / "data", root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = {"API_PORT": str(port), "API_HOST": "127.0.0.1"}
    process = launch(data_dir, log_dir, {**environment, **api}, cpus=cpus)
    stack = RunningStack(base_url=base_url, data_dir=data_dir, log_dir=log_dir, process=process)
    try:
        last: list[str | None] = [None]

        def is_ready() -> bool:
            last[0] = readiness(base_url)
            return last[0] is None

        try:
            wait_until(is_ready, 90, message="the stack to be ready")
        except AssertionError as late:
            raise AssertionError(f"{late}; /readyz last said: {last[0]}") from None
        yield stack
    finally:
        stop(process)


@contextmanager
def running_worker_host(
    root: Path, environment: dict[str, str], ready: Callable[[], bool], cpus: set[int] | None = None
) -> Iterator[RunningHost]:
    """`make worker`: an image worker host of its own (on `cpus` only, when given), once `ready`
    says it is; stopped as Ctrl-C would on exit."""
    data_dir, log_dir = root / "data", root / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    process = launch(data_dir, log_dir, environment, role="worker", cpus=cpus)
    try:
        wait_until(ready, 90, message="the worker host to be ready")
        yield RunningHost(data_dir=data_dir, log_dir=log_dir, process=process)
    finally:
        stop(process)
