"""A local HTTP server that misbehaves on purpose, as scripted by each test: slow, endless, huge."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# What the server does for one request.
Step = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int = 200, body: bytes = b"image", headers: dict[str, str] | None = None) -> Step:
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)

    return step


def reply_without_length(body: bytes) -> Step:
    """An HTTP/1.0 response whose body ends when the connection closes."""

    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(body)

    return step


def flood(total_bytes: int) -> Step:
    """A body of `total_bytes` that ends when the connection closes, sent without ever holding it whole."""
    piece = b"x" * 65536

    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        for _ in range(total_bytes // len(piece)):
            handler.wfile.write(piece)

    return step


def redirect(location: str, status: int = 302) -> Step:
    return reply(status, b"", {"Location": location})


def declare_length_then_wait(length: int, seconds: float) -> Step:
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        time.sleep(seconds)

    return step


def trickle(interval: float, count: int) -> Step:
    """A body of one byte every `interval` seconds."""

    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        for _ in range(count):
            handler.wfile.write(b"x")
            time.sleep(interval)

    return step


def headers_a_byte_at_a_time(interval: float) -> Step:
    """A status line and headers sent one byte every `interval` seconds: no single read ever waits long."""

    def step(handler: BaseHTTPRequestHandler) -> None:
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Padding-%d: %s\r\n" % (i, b"p" * 40) for i in range(100))
        for byte in head:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(interval)

    return step


def endless_chunked_body(interval: float) -> Step:
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while True:
            handler.wfile.write(b"1\r\nx\r\n")
            handler.wfile.flush()
            time.sleep(interval)

    return step


def stall_after(body: bytes, seconds: float) -> Step:
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.end_headers()
        handler.wfile.write(body)
        time.sleep(seconds)

    return step


def slow_hosts() -> dict[str, Step]:
    """Hosts that never finish within a deadline, each its own way, by what a test names them."""
    return {
        "a body a byte at a time": trickle(interval=0.05, count=200),
        "a body that stops": stall_after(b"some bytes", seconds=5),
        "headers a byte at a time": headers_a_byte_at_a_time(interval=0.02),
        "a chunked body that never ends": endless_chunked_body(interval=0.01),
    }


class ScriptedServer:
    """A local HTTP server that answers each path with its steps in turn (the last one repeats) and counts requests."""

    def __init__(self) -> None:
        self._routes: dict[str, list[Step]] = {}
        self._hits: dict[str, int] = {}
        self.request_headers: list[dict[str, str]] = []
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                script._answer(self)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                script.bodies.append(self.rfile.read(length))
                script._answer(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        class QuietServer(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # Clients hanging up early is what several tests are about.

        self._server = QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def route(self, path: str, *steps: Step) -> str:
        self._routes[path] = list(steps)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        return self._hits.get(path, 0)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            turn = self._hits.get(handler.path, 0)
            self._hits[handler.path] = turn + 1
            self.request_headers.append(dict(handler.headers))
            steps = self._routes.get(handler.path, [reply(404, b"")])
        steps[min(turn, len(steps) - 1)](handler)
