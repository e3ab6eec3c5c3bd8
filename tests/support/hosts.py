"""Several machines on one: shared servers, and hosts started with `make run` or `make worker`.

Each host has its own DATA_DIR and its own process tree, as another machine would; the
shared MongoDB-compatible server and Redis are started here, from the same commands
`make run` uses for its embedded ones.
"""

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import redis

from local_stack.processes import LOOPBACK, Program, embedded_mongodb, embedded_redis, free_port
from local_stack.running import PROJECT_ROOT, wait_until


def kill_tree(root: psutil.Process) -> None:
    """A process and all its descendants at once, with SIGKILL, as when a machine is lost."""
    tree = [root, *root.children(recursive=True)]
    for process in tree:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)


@dataclass
class Host:
    name: str
    process: subprocess.Popen[bytes]
    data_dir: Path

    def kill(self) -> None:
        kill_tree(psutil.Process(self.process.pid))


@contextmanager
def host(target: str, root: Path, name: str, environment: dict[str, str]) -> Iterator[Host]:
    """`make TARGET` as a machine of its own, with its DATA_DIR under `root`; stopped on exit."""
    data_dir = root / name
    data_dir.mkdir(parents=True)
    full = {**os.environ, **environment, "DATA_DIR": str(data_dir)}
    for variable in ("MAKEFLAGS", "MAKELEVEL"):
        full.pop(variable, None)
    log = (root / f"{name}.log").open("wb")
    process = subprocess.Popen(["make", "--no-print-directory", target], cwd=PROJECT_ROOT, env=full,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    running = Host(name, process, data_dir)
    try:
        yield running
    finally:
        if process.poll() is None:
            running.kill()
        log.close()


def start_program(program: Program, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(program.command, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)


@contextmanager
def shared_servers(root: Path) -> Iterator[dict[str, str]]:
    """One MongoDB-compatible server and one Redis for every host; their URLs as settings."""
    mongodb_port, redis_port = free_port(), free_port()
    programs = [embedded_mongodb(root, mongodb_port), embedded_redis(root, redis_port)]
    processes = [start_program(program, root / f"{program.name}.log") for program in programs]
    environment = {
        "MONGODB_URL": f"mongodb://{LOOPBACK}:{mongodb_port}/?directConnection=true",
        "REDIS_URL": f"redis://{LOOPBACK}:{redis_port}/0",
    }
    try:
        client = redis.Redis.from_url(environment["REDIS_URL"], socket_timeout=1)
        wait_until(lambda: _answers(client), 30, message="Redis")
        yield environment
    finally:
        for process in processes:  # the test's data need not survive: no time spent saving it
            kill_tree(psutil.Process(process.pid))


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
