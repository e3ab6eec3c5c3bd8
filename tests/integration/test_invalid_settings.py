"""`make run` and `make worker` refuse invalid settings at once, naming them, before they start anything."""

import os
import subprocess
import time

import pytest

from tests.support.stack import PROJECT_ROOT


def make_run(environment: dict[str, str], data_dir, target: str = "run") -> tuple[subprocess.CompletedProcess, float]:
    full = {**os.environ, **environment, "DATA_DIR": str(data_dir)}
    for name in ("MONGODB_URL", "REDIS_URL", "MAKEFLAGS", "MAKELEVEL"):
        full.pop(name, None)
    started = time.monotonic()
    # The timeout is only a backstop: a launcher that accepted the settings would run until killed.
    finished = subprocess.run(
        ["make", "--no-print-directory", target],
        cwd=PROJECT_ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    return finished, time.monotonic() - started


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("WEBHOOK_SECRET", "not-a-secret", True),
        ("WEBHOOK_SECRET", "whsec_not~base64", True),
        ("DOWNLOAD_ATTEMPTS", "-1", False),
        ("MAX_IMAGES_PER_PRODUCT", "0", False),
    ],
)
def test_an_invalid_setting_stops_make_run_at_once_naming_it(tmp_path, name, value, secret):
    finished, seconds = make_run({name: value}, tmp_path / "data")
    output = finished.stdout + finished.stderr
    assert finished.returncode != 0, output
    assert seconds < 10, seconds
    assert f"{name}:" in output, output
    if secret:
        assert value not in output, "the message repeats the secret"
    assert not (tmp_path / "data").exists(), "something was started"


def test_every_bad_setting_is_named_in_one_run(tmp_path):
    finished, _ = make_run({"WEBHOOK_SECRET": "not-a-secret", "DOWNLOAD_ATTEMPTS": "-1"}, tmp_path / "data")
    assert finished.returncode != 0
    assert "WEBHOOK_SECRET:" in finished.stderr and "DOWNLOAD_ATTEMPTS:" in finished.stderr, finished.stderr


def test_make_worker_refuses_to_start_without_the_shared_servers_and_bucket(tmp_path):
    finished, seconds = make_run({"STORAGE_BACKEND": "local"}, tmp_path / "data", target="worker")
    assert finished.returncode == 2, finished.stderr
    assert seconds < 10, seconds
    for needed in ("MONGODB_URL is not set", "REDIS_URL is not set", "STORAGE_BACKEND=s3 is needed"):
        assert needed in finished.stderr, finished.stderr
    assert not (tmp_path / "data").exists(), "something was started"


def test_s3_storage_without_a_bucket_is_refused(tmp_path):
    finished, _ = make_run({"STORAGE_BACKEND": "s3"}, tmp_path / "data")
    assert finished.returncode == 2
    assert "S3_BUCKET must be set when STORAGE_BACKEND=s3" in finished.stderr, finished.stderr
