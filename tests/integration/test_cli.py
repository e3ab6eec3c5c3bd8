"""The `image-service` command against the running service (CONTRACT §9): output, files and exit codes."""

import contextlib
import csv
import os
import pty
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from local_stack.processes import free_port
from tests.support.client import product_csv
from tests.support.command import image_service
from tests.support.stack import PROJECT_ROOT


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_upload_waits_with_progress_lines_and_saves_the_output_csv(stack, image_server, tmp_path):
    products = write(tmp_path / "products.csv", product_csv([(1, "SKU1", [image_server.image("photo.jpg")])]))
    output = tmp_path / "out.csv"
    finished = image_service("upload", str(products), "--wait", "--output", str(output), server=stack.base_url)
    assert finished.returncode == 0, finished.stderr
    assert "completed 100.0 % (1/1 images, 0 failed)" in finished.stderr  # plain lines: not a terminal
    assert ": completed: 1 images stored, 0 failed" in finished.stdout
    assert "saved" in finished.stdout
    [row] = list(csv.DictReader(output.open()))
    assert row["Output Image Urls"].startswith(stack.base_url)


def test_a_request_with_a_failed_image_exits_3_naming_the_failure(stack, image_server, tmp_path):
    missing = f"{image_server.url}/status/404"
    products = write(tmp_path / "p.csv", product_csv([(1, "SKU1", [image_server.image("tiny.jpg"), missing])]))
    finished = image_service("upload", str(products), "--wait", server=stack.base_url)
    assert finished.returncode == 3, finished.stderr
    assert f"failed: SKU1 {missing}: HTTP 404" in finished.stdout


def test_a_request_whose_every_image_failed_exits_4(stack, image_server, tmp_path):
    products = write(tmp_path / "p.csv", product_csv([(1, "SKU1", [f"{image_server.url}/status/404"])]))
    assert image_service("upload", str(products), "--wait", server=stack.base_url).returncode == 4


def test_a_refused_upload_exits_2_with_each_error_and_its_line(stack, tmp_path):
    bad = write(tmp_path / "bad.csv", "S. No.,Product Name,Input Image Urls\nx,SKU1,ftp://img.example.com/a.jpg\n")
    finished = image_service("upload", str(bad), server=stack.base_url)
    assert finished.returncode == 2
    assert "error: HTTP 400: the CSV has 2 errors" in finished.stderr
    assert "line 2, S. No.: serial number must be a positive integer, got 'x'" in finished.stderr
    assert "line 2, Input Image Urls: image URL 'ftp://img.example.com/a.jpg' is not an absolute" in finished.stderr


def test_status_and_download_of_a_finished_request(stack, image_server, tmp_path):
    products = write(tmp_path / "p.csv", product_csv([(1, "SKU1", [image_server.image("tiny.jpg")])]))
    request_id = image_service("upload", str(products), server=stack.base_url).stdout.strip()
    image_service("upload", str(products), "--wait", server=stack.base_url)  # waits for the queue to drain
    shown = image_service("status", request_id, server=stack.base_url)
    assert shown.returncode == 0 and f"{request_id}: completed" in shown.stdout
    output = tmp_path / "out.csv"
    assert image_service("download", request_id, "--output", str(output), server=stack.base_url).returncode == 0
    assert output.read_text().startswith("S. No.,Product Name,Input Image Urls,Output Image Urls")


def test_an_unknown_request_exits_2_and_an_unreachable_server_1(stack, tmp_path):
    unknown = image_service("status", "00000000-0000-4000-8000-000000000000", server=stack.base_url)
    assert unknown.returncode == 2 and "HTTP 404: request not found" in unknown.stderr
    nowhere = image_service("status", "x", server=f"http://127.0.0.1:{free_port()}")
    assert nowhere.returncode == 1 and "cannot reach" in nowhere.stderr


def test_bad_usage_exits_2(stack):
    assert image_service("upload", "/no/such/file.csv", server=stack.base_url).returncode == 2


def test_on_a_terminal_the_progress_is_a_bar(stack, image_server, tmp_path):
    products = write(tmp_path / "p.csv", product_csv([(1, "SKU1", [f"{image_server.url}/delay/2/photo.jpg"])]))
    controller, terminal = pty.openpty()
    environment = {**os.environ, "IMAGE_SERVICE_URL": stack.base_url, "COLUMNS": "120"}
    process = subprocess.Popen([sys.executable, "-m", "client", "upload", str(products), "--wait"], cwd=PROJECT_ROOT,
                               env=environment, stdout=terminal, stderr=terminal)  # fmt: skip
    os.close(terminal)
    # Read while it runs: a terminal's buffer is small, and a writer blocked on it never ends.
    with ThreadPoolExecutor(1) as reader:
        output = reader.submit(read_all, controller)
        assert process.wait(timeout=120) == 0
        shown = output.result(timeout=10).decode(errors="replace")
    assert "images" in shown and "━" in shown  # rich's bar
    assert "1/1" in shown


def read_all(fd: int) -> bytes:
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the other end is closed
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks)
