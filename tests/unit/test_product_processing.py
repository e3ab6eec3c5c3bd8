"""One product's images in the worker's shared threads: never more than DOWNLOAD_CONCURRENCY of them
at once, so a product of many images on a slow host holds no more of the worker than any other."""

import io
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from shared.settings import Settings
from shared.store.product_claims import Claimed, ProductWork
from worker_service.context import WorkerContext
from worker_service.product_processing import process_product

IMAGES = 12
AT_ONCE = 3
ANSWER_AFTER_SECONDS = 0.2


class SlowHost(ThreadingHTTPServer):
    """Answers every GET with the same JPEG after a pause, counting the requests it holds at once."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), SlowHandler)
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), "teal").save(buffer, "JPEG")
        self.jpeg = buffer.getvalue()
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{index}.jpg"


class SlowHandler(BaseHTTPRequestHandler):
    server: SlowHost

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.now += 1
            self.server.most = max(self.server.most, self.server.now)
        time.sleep(ANSWER_AFTER_SECONDS)
        with self.server.lock:
            self.server.now -= 1
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.server.jpeg)))
        self.end_headers()
        self.wfile.write(self.server.jpeg)


@pytest.fixture
def host() -> Iterator[SlowHost]:
    server = SlowHost()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def context(tmp_path) -> Iterator[WorkerContext]:
    settings = Settings.load(
        env_file=None,
        data_dir=tmp_path,
        allow_private_networks=True,
        download_concurrency=AT_ONCE,
        worker_concurrency=2,
        codec_concurrency=1,
        product_lease_seconds=600,  # no renewal falls due within the test: it needs no database
        reuse_outputs=False,  # nor does it remember sources
    )
    worker = WorkerContext(settings)
    yield worker
    worker.codec_pool.close()
    worker.image_threads.shutdown()


def test_a_product_has_at_most_download_concurrency_images_under_way(context, host):
    work = ProductWork("request", 0, 1, [host.url(i) for i in range(IMAGES)])
    outcomes = process_product(context, work, Claimed(attempt=1))
    assert [outcome.error for outcome in outcomes] == [None] * IMAGES
    assert [outcome.key for outcome in outcomes] == [f"request/1-{i}.jpg" for i in range(IMAGES)]
    # The worker has threads for two products' worth (2 x 3): without its own bound the product
    # would have had six images under way.
    assert host.most == AT_ONCE
