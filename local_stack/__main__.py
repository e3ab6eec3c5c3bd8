"""Start the whole service (`make run`), or only an image worker for another machine
(`make worker`), in the foreground under supervisord.

Ctrl-C or SIGTERM stops every process it started. The launcher asks the kernel to send
it SIGTERM if its parent (make) dies, and then becomes supervisord itself, which keeps
that request: so even `kill <make>` takes the whole stack down.
"""

import argparse
import ctypes
import os
import signal
import sys
from pathlib import Path
from typing import NoReturn

from local_stack.processes import stack_programs, worker_host_problems, worker_host_programs
from local_stack.supervisor_config import render
from shared.settings import InvalidSettings, Settings

PR_SET_PDEATHSIG = 1
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def refuse(problems: list[str]) -> NoReturn:
    for problem in problems:
        print(problem, file=sys.stderr)
    print("nothing was started", file=sys.stderr)
    sys.exit(2)


def settings_or_exit() -> Settings:
    """The settings, or exit with status 2 naming every bad one, before anything is started."""
    try:
        return Settings.load()
    except InvalidSettings as error:
        refuse(error.problems)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "role",
        nargs="?",
        choices=["all", "worker"],
        default="all",
        help="all: the whole service (make run); worker: only an image worker (make worker)",
    )
    parser.add_argument("--log-dir", type=Path, help="write each program's log here instead of the terminal")
    arguments = parser.parse_args()

    settings = settings_or_exit()
    worker_host = arguments.role == "worker"
    if worker_host and (problems := worker_host_problems(settings)):
        refuse(problems)
    settings = settings.replacing(
        service=settings.service.model_copy(update={"data_dir": settings.service.data_dir.resolve()})
    )
    run_dir = settings.service.data_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = arguments.log_dir.resolve() if arguments.log_dir else None
    if log_dir:
        log_dir.mkdir(parents=True, exist_ok=True)

    programs, environment = worker_host_programs(settings) if worker_host else stack_programs(settings)
    config = run_dir / "supervisord.conf"
    config.write_text(render(programs, environment, directory=PROJECT_ROOT, run_dir=run_dir, log_dir=log_dir))

    print(f"Starting {', '.join(p.name for p in programs)}; data in {settings.service.data_dir}", flush=True)
    if not worker_host:
        print(f"API: {settings.base_url}  (Swagger UI at {settings.base_url}/docs)", flush=True)
    print("Ctrl-C stops everything", flush=True)
    die_with_parent()
    supervisord = Path(sys.executable).with_name("supervisord")
    os.execv(supervisord, [str(supervisord), "--configuration", str(config)])


if __name__ == "__main__":
    main()
