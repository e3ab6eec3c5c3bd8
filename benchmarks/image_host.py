"""A local image host with a set latency per request and bandwidth per connection."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from benchmarks.corpus import CorpusImage

CHUNK = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def do_GET(self) -> None:
        host: ImageHost = self.server.host
        arrived = time.time()
        path = urlsplit(self.path).path
        # /img/<n>/<anything>: image n of the pool; the rest makes every URL distinct.
        parts = path.strip("/").split("/")
        if len(parts) < 2 or parts[0] != "img":
            self.send_error(404)
            return
        image = host.corpus[int(parts[1]) % len(host.corpus)]
        host.record(path, arrived)
        time.sleep(host.latency)
        self.send_response(200)
        self.send_header("Content-Type", image.content_type)
        self.send_header("Content-Length", str(len(image.data)))
        self.end_headers()
        self.send_body(image.data, host.bandwidth)

    def send_body(self, data: bytes, bandwidth: float | None) -> None:
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            self.wfile.write(chunk)
            if bandwidth:
                time.sleep(len(chunk) / bandwidth)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, *_: object) -> None:
        pass


class ImageHost:
    def __init__(self, corpus: list[CorpusImage], latency: float = 0.0, bandwidth: float | None = None) -> None:
        self.corpus = corpus
        self.latency = latency
        self.bandwidth = bandwidth
        self.arrivals: dict[str, float] = {}
        self.lock = threading.Lock()

    def record(self, path: str, arrived: float) -> None:
        with self.lock:
            self.arrivals.setdefault(path, arrived)

    def __enter__(self) -> "ImageHost":
        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.host = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, run: str, index: int) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/img/{index % len(self.corpus)}/{run}-{index}"

    def image_of(self, index: int) -> CorpusImage:
        return self.corpus[index % len(self.corpus)]
