"""`make bench` is not run by CI: its modules are at least imported here, so a rename elsewhere breaks a test,
and its pure parts (corpora, report, the figures it derives) are checked on small inputs."""

import argparse
import importlib
import io
import os
import pkgutil
import socket
import time
from collections import namedtuple
from pathlib import Path

import httpx
import pytest
from PIL import Image

import benchmarks
from benchmarks.__main__ import corpus_names
from benchmarks.compare import parse_arguments as parse_compare_arguments
from benchmarks.compare import table as comparison_table
from benchmarks.corpus import CORPORA, CorpusImage, burst_spec, formats
from benchmarks.image_host import ImageHost
from benchmarks.measure import cpu_shares, poller_targets
from benchmarks.report import markdown
from benchmarks.service import COARSE_POLL_S, FINE_POLL_S, last_stored_at, poll_interval
from benchmarks.webhook_receiver import WebhookReceiver
from benchmarks.worker_host import busy_share


@pytest.mark.parametrize("name", [module.name for module in pkgutil.iter_modules(benchmarks.__path__)])
def test_the_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")


def test_the_photos_corpus_is_jpegs_of_half_a_megapixel_to_two() -> None:
    corpus = CORPORA["photos"].generate()
    assert len(corpus) >= 5
    for image in corpus:
        decoded = Image.open(io.BytesIO(image.data))
        assert decoded.format == "JPEG" and image.content_type == "image/jpeg"
        assert decoded.size == (image.width, image.height)
        # 4:3 in whole pixels falls a little short of the megapixels asked for.
        assert 0.5 <= round(image.megapixels, 2) <= 2.0
    assert len({image.data for image in corpus}) == len(corpus), "each image has its own seed"


def test_the_burst_corpus_has_a_jpeg_and_a_png_cut_out_per_product() -> None:
    corpus = burst_spec(2).generate()
    assert [Image.open(io.BytesIO(image.data)).format for image in corpus] == ["JPEG", "PNG", "JPEG", "PNG"]
    assert formats(corpus) == {"jpg": 2, "png": 2}
    assert Image.open(io.BytesIO(corpus[1].data)).mode == "RGBA"
    assert len({image.data for image in corpus}) == 4, "each product its own images"


def test_corpora_are_named_on_the_command_line() -> None:
    assert corpus_names("photos, mixed") == ["photos", "mixed"]
    with pytest.raises(argparse.ArgumentTypeError, match="holiday"):
        corpus_names("mixed,holiday")


def test_pollers_are_spread_over_every_url() -> None:
    targets = poller_targets(["a", "b", "c"], 5)
    assert targets == ["a", "b", "c", "a", "b"]
    assert poller_targets(["a", "b", "c"], 2) == ["a", "b", "c"], "no request goes unpolled"


def test_cpu_shares_are_of_the_whole_machine() -> None:
    shares = cpu_shares({"mongodb": 1.0, "worker": 2.0}, {"mongodb": 2.0, "worker": 5.0}, seconds=2.0, cores=2)
    assert shares == {"mongodb": 0.25, "worker": 0.75}


def test_status_is_polled_finely_once_every_output_is_stored_or_none_comes() -> None:
    assert poll_interval(stored=10, expected=20, quiet_for=0.1) == COARSE_POLL_S
    assert poll_interval(stored=20, expected=20, quiet_for=0.1) == FINE_POLL_S
    assert poll_interval(stored=18, expected=20, quiet_for=5.0) == FINE_POLL_S


def test_the_last_stored_output_is_the_newest_finished_file(tmp_path: Path) -> None:
    assert last_stored_at(tmp_path / "missing") is None
    for name, mtime in (("1-0.jpg", 1000.0), ("1-1.jpg", 1002.5), (".tmp123.part", 2000.0)):
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (mtime, mtime))
    assert last_stored_at(tmp_path) == 1002.5


def test_the_webhook_receiver_notes_the_first_delivery_of_each_request() -> None:
    body = {"type": "request.completed", "data": {"request_id": "r1", "status": "completed"}}
    with WebhookReceiver() as receiver:
        assert httpx.post(receiver.url, json=body).status_code == 204
        first = receiver.wait_for("r1", timeout=5)
        assert httpx.post(receiver.url, json=body).status_code == 204
        assert httpx.post(receiver.url, content=b"not json").status_code == 204
        assert receiver.wait_for("r1", timeout=5) == first
        assert receiver.deliveries == {"r1": 2}
        assert receiver.wait_for("r2", timeout=0.01) is None


def read_response(reader: io.BufferedReader) -> tuple[str, dict[str, str], bytes]:
    """One HTTP/1.1 answer off a socket: its status line, headers (lower-case names) and body."""
    status = reader.readline().decode().rstrip("\r\n")
    headers = {}
    while (line := reader.readline().decode().rstrip("\r\n")) != "":
        name, _, value = line.partition(":")
        headers[name.lower()] = value.strip()
    return status, headers, reader.read(int(headers["content-length"]))


def tiny_corpus() -> list[CorpusImage]:
    return [
        CorpusImage("0.jpg", b"\xff\xd8jpeg" * 5000, "image/jpeg", 1, 1),
        CorpusImage("1.png", b"\x89PNG" * 20, "image/png", 1, 1),
    ]


def test_the_image_host_serves_images_over_kept_alive_connections_and_notes_arrivals() -> None:
    corpus = tiny_corpus()
    with ImageHost(corpus, latency=0.05) as host, socket.create_connection(("127.0.0.1", host.port)) as connection:
        assert host.pid != os.getpid(), "a process of its own"
        assert os.getsid(host.pid) == host.pid, "and a session of its own"
        reader = connection.makefile("rb")
        path = host.url("run", 3).split(str(host.port), 1)[1]
        assert path == "/img/1/run-3"
        started, wall_started = time.monotonic(), time.time()
        connection.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, body = read_response(reader)
        # uvloop's clock counts whole milliseconds as of its loop's turn: a wait may end up to 1 ms early.
        assert time.monotonic() - started >= 0.05 - 0.001, "the host's latency"
        assert status == "HTTP/1.1 200 OK" and body == corpus[1].data
        assert headers == {"content-type": "image/png", "content-length": str(len(corpus[1].data))}
        # The same connection again, then two requests pipelined in one write: answered in order.
        connection.sendall(b"GET /img/0/run-4?size=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(reader)[2] == corpus[0].data
        connection.sendall(b"GET /img/5/run-5 HTTP/1.1\r\n\r\nGET /img/1/run-3 HTTP/1.1\r\n\r\n")
        assert [read_response(reader)[2] for _ in range(2)] == [corpus[1].data, corpus[1].data]
        for other in ("/", "/img/1", "/img/x/run-1", "/images/1/run-1", "/favicon.ico"):
            connection.sendall(f"GET {other} HTTP/1.1\r\n\r\n".encode())
            assert read_response(reader)[0] == "HTTP/1.1 404 Not Found", other
        connection.sendall(b"GET /img/0/run-6 HTTP/1.1\r\nConnection: close\r\n\r\n")
        assert read_response(reader)[2] == corpus[0].data and reader.read() == b"", "closed when asked"
        first = host.arrivals
        assert set(first) == {"/img/1/run-3", "/img/0/run-4", "/img/5/run-5", "/img/0/run-6"}
        assert wall_started <= first["/img/1/run-3"] <= time.time()
        assert host.arrivals["/img/1/run-3"] == first["/img/1/run-3"], "the first arrival is kept"
    assert host.arrivals == first, "after the block, the last ones fetched"
    assert host.process is not None and host.process.poll() is not None, "the host's process has ended"


def test_the_image_host_with_validators_answers_304_to_its_own_etag_and_counts_bodies() -> None:
    corpus = tiny_corpus()
    with ImageHost(corpus, validators=True) as host, socket.create_connection(("127.0.0.1", host.port)) as connection:
        reader = connection.makefile("rb")
        connection.sendall(b"GET /img/0/run-1 HTTP/1.1\r\n\r\n")
        status, headers, body = read_response(reader)
        assert (status, body) == ("HTTP/1.1 200 OK", corpus[0].data)
        etag = headers["etag"]
        assert headers["last-modified"]
        connection.sendall(f"GET /img/0/run-1 HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n".encode())
        assert read_response(reader)[:3:2] == ("HTTP/1.1 304 Not Modified", b"")
        connection.sendall(b'GET /img/0/run-1 HTTP/1.1\r\nIf-None-Match: "other"\r\n\r\n')
        assert read_response(reader)[2] == corpus[0].data
        assert host.counts() == {"bodies": 2, "not_modified": 1}


def test_the_image_host_serves_64_connections_at_once_and_keeps_to_its_bandwidth() -> None:
    corpus = tiny_corpus()
    with ImageHost(corpus, latency=0.02) as host:
        connections = [socket.create_connection(("127.0.0.1", host.port)) for _ in range(64)]
        try:
            for i, connection in enumerate(connections):
                connection.sendall(f"GET /img/{i}/many-{i} HTTP/1.1\r\n\r\n".encode())
            bodies = [read_response(connection.makefile("rb"))[2] for connection in connections]
        finally:
            for connection in connections:
                connection.close()
        assert bodies == [corpus[i % 2].data for i in range(64)]
        assert len(host.arrivals) == 64
    large = [CorpusImage("large.jpg", bytes(range(256)) * 800, "image/jpeg", 1, 1)]
    with ImageHost(large, bandwidth=1_000_000) as host:
        started = time.monotonic()
        response = httpx.get(host.url("slow", 0))
        # 204,800 bytes at 1 MB/s in 64 KiB chunks: three pauses of 65 ms before the last chunk.
        assert response.content == large[0].data and time.monotonic() - started >= 0.19


def fake_run(images: int, latency_ms: int, seconds: float, webhook: float | None) -> dict:
    return {
        "images": images,
        "latency_ms": latency_ms,
        "seconds": seconds,
        "images_per_second": images / seconds,
        "megapixels_per_second": 1.5 * images / seconds,
        "ratio_to_ceiling": 0.8,
        "ratio_to_codec_ceiling": 0.85,
        "image_latency_p50_s": 0.2,
        "image_latency_p95_s": 0.9,
        "last_stored_to_final_status_s": 0.43,
        "last_stored_to_webhook_s": webhook,
        "output_to_input_bytes": 0.3,
        "worker_cpu_utilisation": 0.8,
        "cpu_share": {"worker": 0.4, "image_host": 0.004 * latency_ms / 100 + 0.01},
        "peak_memory_mb": {"api": 80, "worker": 400},
    }


def fake_section(name: str, description: str) -> dict:
    return {
        "corpus": {
            "name": name,
            "description": description,
            "images": 9,
            "formats": {"jpg": 9},
            "mean_megapixels": 1.2,
            "megapixels": [1.2] * 9,
        },
        "ceiling": {
            "plain_pillow_images_per_second": 60.0,
            "service_codec_images_per_second": 58.0,
            "stack_cpu_share": 0.01,
        },
        "runs": [fake_run(20, 0, 1.0, 0.21), fake_run(40, 0, 2.1, None)],
    }


def test_the_report_has_a_table_per_corpus_and_the_burst() -> None:
    spread = {"p50": 0.4, "max": 0.9, "missing": 0}
    report = {
        "cores": 2,
        "per_product": 5,
        "corpora": {
            "mixed": fake_section("mixed", "the original corpus"),
            "photos": fake_section("photos", "ordinary product photos"),
        },
        "burst": {
            "corpus": {
                "name": "burst",
                "description": "a JPEG and a PNG per product",
                "images": 20,
                "formats": {"jpg": 10, "png": 10},
                "mean_megapixels": 0.65,
            },
            "ceiling": {"plain_pillow_images_per_second": 70.0, "service_codec_images_per_second": 66.0},
            "requests": 30,
            "products_per_request": 10,
            "images": 600,
            "images_failed": 0,
            "upload_seconds": {"p50": 0.05, "max": 0.2, "missing": 0},
            "seconds_to_last_final_status": 12.0,
            "seconds_to_last_webhook": 11.8,
            "images_per_second": 50.0,
            "ratio_to_ceiling": 50 / 70,
            "ratio_to_codec_ceiling": 50 / 66,
            "status_under_pollers": {"pollers": 50, "interval_s": 0.5, "requests": 900, "p50_ms": 4.0, "p99_ms": 40.0},
            "last_stored_to_final_status_s": spread,
            "last_stored_to_webhook_s": {"p50": 0.1, "max": None, "missing": 1},
            "cpu_share": {"worker": 0.7, "mongodb": 0.12, "api": 0.08, "redis": 0.01, "image_host": 0.006},
            "peak_worker_pss_mb": 410.0,
        },
        "status_under_50_pollers": {"pollers": 50, "interval_s": 0.5, "requests": 3000, "p50_ms": 4, "p99_ms": 38},
        "accept_seconds": {"10000": 0.23},
        "accept_first_image_seconds": {"10000": 2.61},
    }
    text = markdown(report)
    assert "## Corpus “mixed”: the original corpus" in text
    assert "## Corpus “photos”: ordinary product photos" in text
    assert text.index("“mixed”") < text.index("“photos”") < text.index("## Burst")
    assert text.count("| last stored → final (status / webhook) |") == 2
    assert "| 0.43 / 0.21 s |" in text and "| 0.43 / – s |" in text, "a webhook that never came is a dash"
    assert "| 30 × 10 × 2 = 600 |" in text and "| 12.0 / 11.8 s |" in text and "| 0.71 |" in text
    assert "mongodb 12.0 %" in text and "worker 70.0 %" in text
    assert "redis 1.0 %. Image host CPU: 0.6 % of the machine." in text
    assert text.count("Image host CPU, as a share of the whole machine: 20 images at 0 ms 1.0 %, 40 images") == 2
    assert "| 4.0 / 40.0 ms |" in text
    assert "Accepting a 10,000-product CSV: 0.23 s; its first image stored 2.61 s after the upload began." in text
    tables = tables_of(text)
    assert len(tables) == 3
    for table in tables:
        assert len({line.count("|") for line in table}) == 1, "every row has as many cells as its header"


def tables_of(text: str) -> list[list[str]]:
    tables: list[list[str]] = []
    previous = ""
    for line in text.splitlines():
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def test_the_worker_host_section_splits_its_cpu_by_step() -> None:
    steps = {"download": 2.0, "codec_handoff": 0.3, "store": 3.4, "database": 0.35, "logging": 0.05,
             "metrics": 0.05, "celery_and_rest": 1.6, "codec": 12.3, "codec_processes": 13.1}  # fmt: skip
    host = {"images": 1000, "seconds": 22.0, "images_per_second": 45.4, "pillow_images_per_second": 92.3,
            "pillow_images_per_second_before_after": [90.1, 94.5],
            "codec_images_per_second": 103.0, "ratio_to_pillow": 0.49, "ratio_to_codec": 0.44,
            "pillow_ms_per_image": 10.83, "cpu_ms_per_image": steps, "main_process_ms_per_image": 7.86,
            "worker_cores": [1], "corpus": "photos", "other_cores_busy": 0.62,
            "pillow_beside_busy_images_per_second": 76.5, "ratio_to_pillow_beside_busy": 0.59}  # fmt: skip
    text = markdown({"cores": 2, "per_product": 5, "corpora": {}, "worker_host": host})
    assert "## A worker host alone on core(s) 1 (photos corpus)" in text
    assert "the mean of its rates just before and just after the run (90.1 and 94.5 images/s)" in text
    assert "| 1000 | 22.0 | 45.4 | 92.3 | 0.49 | 0.44 | 10.83 | 13.10 (12.30) | 7.86 |" in text
    assert "| 2.00 | 0.30 | 3.40 | 0.35 | 0.05 | 0.05 | 1.60 |" in text
    assert "The other cores were 62% busy during the run. Pillow alone beside them spinning" in text
    assert "76.5 images/s; the worker host's ratio to that: 0.59." in text
    assert "first request" not in text  # a report from before the warm-up
    for table in tables_of(text):
        assert len({line.count("|") for line in table}) == 1
    warmed = {**host, "first_request": {"images": 100, "seconds": 1.234}}
    text = markdown({"cores": 2, "per_product": 5, "corpora": {}, "worker_host": warmed})
    assert "its first request (100 images), uploaded as soon as the host was up, took 1.23 s to be final" in text


def test_the_other_cores_share_of_busy_time_leaves_out_idle_and_iowait() -> None:
    times = namedtuple("times", "user system idle iowait")
    before = [times(0, 0, 0, 0), times(10, 5, 100, 1)]
    after = [times(99, 99, 99, 99), times(13, 6, 104, 2)]  # core 1: 4 s busy of 9
    assert busy_share(before, after, {1}) == pytest.approx(4 / 9)


def test_the_comparison_table_gives_every_run_then_each_sides_range() -> None:
    runs = [
        ("HEAD~1 #1", {"images_per_second": 60.7, "ratio_to_pillow": 0.52, "celery_and_rest": 1.5}),
        ("this checkout #1", {"images_per_second": 69.8, "ratio_to_pillow": 0.64, "celery_and_rest": 1.4}),
        ("HEAD~1 #2", {"images_per_second": 61.6, "ratio_to_pillow": 0.52, "celery_and_rest": 1.6}),
        ("this checkout #2", {"images_per_second": 71.6, "ratio_to_pillow": 0.66}),
    ]
    text = comparison_table("HEAD~1", runs)
    assert "| HEAD~1 #1 | 60.7 | 0.52 | – |" in text
    assert "| **HEAD~1** | 60.7–61.6 | 0.52 | – |" in text
    assert "| **this checkout** | 69.8–71.6 | 0.64–0.66 | – |" in text
    assert text.rstrip().endswith("| – | – | – | – | – | 1.40 | – |")
    for line_table in tables_of(text):
        assert len({line.count("|") for line in line_table}) == 1


def test_the_comparison_runs_the_worker_host_alone_unless_told_otherwise() -> None:
    arguments = parse_compare_arguments(["HEAD~1"])
    assert (arguments.base, arguments.runs) == ("HEAD~1", 2)
    assert "--worker-host-images 1000" in arguments.bench_args and "--burst-requests 0" in arguments.bench_args
