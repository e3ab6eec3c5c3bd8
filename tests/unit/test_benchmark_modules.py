"""`make bench` is not run by CI: its modules are at least imported here, so a rename elsewhere breaks a test,
and its pure parts (corpora, report, the figures it derives) are checked on small inputs."""

import argparse
import importlib
import io
import os
import pkgutil
from pathlib import Path

import httpx
import pytest
from PIL import Image

import benchmarks
from benchmarks.__main__ import corpus_names
from benchmarks.corpus import CORPORA, burst_spec, formats
from benchmarks.measure import cpu_shares, poller_targets
from benchmarks.report import markdown
from benchmarks.service import COARSE_POLL_S, FINE_POLL_S, last_stored_at, poll_interval
from benchmarks.webhook_receiver import WebhookReceiver


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
            "cpu_share": {"worker": 0.7, "mongodb": 0.12, "api": 0.08, "redis": 0.01},
            "peak_worker_pss_mb": 410.0,
        },
        "status_under_50_pollers": {"pollers": 50, "interval_s": 0.5, "requests": 3000, "p50_ms": 4, "p99_ms": 38},
        "accept_seconds": {"10000": 0.23},
    }
    text = markdown(report)
    assert "## Corpus “mixed”: the original corpus" in text
    assert "## Corpus “photos”: ordinary product photos" in text
    assert text.index("“mixed”") < text.index("“photos”") < text.index("## Burst")
    assert text.count("| last stored → final (status / webhook) |") == 2
    assert "| 0.43 / 0.21 s |" in text and "| 0.43 / – s |" in text, "a webhook that never came is a dash"
    assert "| 30 × 10 × 2 = 600 |" in text and "| 12.0 / 11.8 s |" in text and "| 0.71 |" in text
    assert "mongodb 12.0 %" in text and "worker 70.0 %" in text
    assert "| 4.0 / 40.0 ms |" in text
    assert "Accepting a 10,000-product CSV: 0.23 s." in text
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
