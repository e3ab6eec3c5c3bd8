"""`make run` itself: it serves, restarts what dies, and leaves nothing behind when stopped."""

import os
import signal
import subprocess

import httpx
import psutil
import pytest

from local_stack.processes import free_port
from local_stack.running import RunningStack
from tests.support.stack import PROJECT_ROOT, TEST_ENVIRONMENT, ready, wait_until


@pytest.fixture(scope="module")
def make_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("make-run")
    port = free_port()
    environment = {**os.environ, **TEST_ENVIRONMENT, "DATA_DIR": str(root / "data"), "API_PORT": str(port)}
    for name in ("MONGODB_URL", "REDIS_URL", "PUBLIC_BASE_URL", "MAKEFLAGS", "MAKELEVEL"):
        environment.pop(name, None)
    log = (root / "make-run.log").open("wb")
    process = subprocess.Popen(
        ["make", "--no-print-directory", "run"],
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: ready(base_url), 90, message="make run to be ready")
        yield process, base_url, RunningStack(data_dir=root / "data", log_dir=root, process=process, base_url=base_url)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def test_make_run_serves_the_swagger_ui(make_run):
    _, base_url, _ = make_run
    response = httpx.get(f"{base_url}/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_a_killed_worker_is_started_again_within_seconds(make_run):
    _, _, stack = make_run
    before = wait_until(lambda: stack.pid_of("worker"), 30, message="a worker pid")
    os.kill(before, signal.SIGKILL)
    after = wait_until(lambda: (p := stack.pid_of("worker")) and p != before and p, 15, message="a new worker")
    assert psutil.pid_exists(after)


def test_readiness_is_503_while_redis_is_down(make_run):
    _, base_url, stack = make_run
    stack.supervisorctl("stop", "redis")
    try:
        response = httpx.get(f"{base_url}/readyz", timeout=10)
        assert response.status_code == 503
        assert "redis" in response.json()["detail"]
        assert httpx.get(f"{base_url}/healthz").status_code == 200
    finally:
        stack.supervisorctl("start", "redis")
    wait_until(lambda: ready(base_url), 30, message="readiness after Redis is back")


def test_sigterm_to_make_leaves_no_process_behind(make_run):
    process, _, stack = make_run
    data_dir = stack.data_dir
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    assert len(tree) >= 7, [p.name() for p in tree]
    process.send_signal(signal.SIGTERM)
    _gone, alive = psutil.wait_procs(tree, timeout=60)
    assert not alive, [(p.pid, p.cmdline()) for p in alive]
    leftovers = [
        p for p in psutil.process_iter(["cmdline"]) if any(str(data_dir) in part for part in (p.info["cmdline"] or []))
    ]
    assert not leftovers
