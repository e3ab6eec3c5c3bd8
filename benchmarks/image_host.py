"""A local image host with a set latency per request and bandwidth per connection.

Real image hosts are other machines: this one serves from a process of its own, in a session of
its own (so the kernel schedules it as a separate group), with asyncio, each response's status
line and headers built once per corpus image. A threaded http.server in the benchmark's process
cost about 2 ms of CPU per image served, CPU the measured service then did not get. Its pid is
`ImageHost.pid`, so the benchmark can report what the host costs beside the service's programs.

The host's process is `python -m benchmarks.image_host FD`: FD is its end of a socket pair, over
which it receives the corpus, answers with its port, and then answers "arrivals" until the pair
closes. It imports only the standard library (and uvloop, when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from benchmarks.corpus import CorpusImage

CHUNK = 64 * 1024
ROOT = Path(__file__).resolve().parent.parent
# A request head larger than this is not one of the downloader's: the connection is dropped.
MAX_HEAD = 16 * 1024
STARTUP_S = 60.0

NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\n\r\nnot found\n"
NOT_ALLOWED = b"HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Length: 0\r\n\r\n"
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class QuietServer(ThreadingHTTPServer):
    """A threaded http.server that keeps quiet about clients going away (the webhook receiver's)."""

    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, *_: object) -> None:
        pass


LAST_MODIFIED = "Sun, 06 Dec 2026 10:00:00 GMT"


def etag_of(data: bytes) -> str:
    return f'"{hashlib.sha256(data).hexdigest()[:16]}"'


def response(content_type: str, data: bytes, validators: bool) -> bytes:
    """An image's whole answer, status line, headers and body, built once and then only written."""
    tags = f"ETag: {etag_of(data)}\r\nLast-Modified: {LAST_MODIFIED}\r\n" if validators else ""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(data)}\r\n{tags}\r\n"
    return head.encode("latin-1") + data


def not_modified(data: bytes) -> bytes:
    return f"HTTP/1.1 304 Not Modified\r\nETag: {etag_of(data)}\r\nContent-Length: 0\r\n\r\n".encode("latin-1")


def header(headers: bytes, name: bytes) -> bytes | None:
    for line in headers.split(b"\r\n"):
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


class Images:
    """What the host's process serves, and when each image path was first asked for.

    With `validators`, every image has an ETag (of its bytes) and a Last-Modified, and a request
    whose If-None-Match names it is answered `304 Not Modified`, as a CDN does (re-imports)."""

    def __init__(
        self, corpus: list[tuple[str, bytes]], latency: float, bandwidth: float | None, validators: bool
    ) -> None:
        self.responses = [response(content_type, data, validators) for content_type, data in corpus]
        self.etags = [etag_of(data).encode() for _, data in corpus] if validators else []
        self.unchanged = [not_modified(data) for _, data in corpus]
        self.latency = latency
        self.bandwidth = bandwidth
        self.arrivals: dict[bytes, float] = {}
        # Answers with a body, and 304s, since the host started.
        self.counts = {"bodies": 0, "not_modified": 0}

    def answer(self, head: bytes) -> tuple[bytes, bool, bool]:
        """The answer to a request head; whether it waits the host's latency; whether the connection then closes."""
        line, _, headers = head.partition(b"\r\n")
        parts = line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return BAD_REQUEST, False, True
        method, target, version = parts
        lowered = headers.lower()
        close = b"connection: close" in lowered or (version == b"HTTP/1.0" and b"connection: keep-alive" not in lowered)
        if method != b"GET":
            return NOT_ALLOWED, False, close
        # /img/<n>/<anything>: image n of the pool; the rest makes every URL distinct.
        path = target.split(b"?", 1)[0]
        segments = path.split(b"/", 3)
        if len(segments) < 4 or segments[0] or segments[1] != b"img" or not segments[2].isdigit():
            return NOT_FOUND, False, close
        self.arrivals.setdefault(path, time.time())
        index = int(segments[2]) % len(self.responses)
        if self.etags and header(headers, b"if-none-match") == self.etags[index]:
            self.counts["not_modified"] += 1
            return self.unchanged[index], True, close
        self.counts["bodies"] += 1
        return self.responses[index], True, close


class ClientConnection(asyncio.Protocol):
    """One client connection: its requests answered in order, each after the host's latency."""

    def __init__(self, images: Images) -> None:
        self.images = images
        self.loop = asyncio.get_running_loop()
        self.buffer = b""
        # (when it may be sent, answer, whether the connection then closes), in the order asked.
        self.pending: deque[tuple[float, bytes, bool]] = deque()
        self.busy = False
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.timer:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            answer, waits, close = self.images.answer(head)
            ready = self.loop.time() + (self.images.latency if waits else 0.0)
            self.pending.append((ready, answer, close))
            if close:
                break
        if len(self.buffer) > MAX_HEAD:
            self.close()
            return
        self.next()

    def next(self) -> None:
        if self.busy or not self.pending or self.transport is None:
            return
        self.busy = True
        delay = self.pending[0][0] - self.loop.time()
        if delay > 0:
            self.timer = self.loop.call_later(delay, self.send)
        else:
            self.send()

    def send(self) -> None:
        _, answer, close = self.pending.popleft()
        if self.transport is None:
            return
        if self.images.bandwidth:
            self.stream(memoryview(answer), 0, close, self.images.bandwidth)
        else:
            self.transport.write(answer)
            self.done(close)

    def stream(self, answer: memoryview, offset: int, close: bool, bandwidth: float) -> None:
        """A chunk, then a pause as long as the bandwidth takes to carry it; then the next."""
        if self.transport is None:
            return
        chunk = answer[offset : offset + CHUNK]
        self.transport.write(chunk)
        offset += len(chunk)
        pause = len(chunk) / bandwidth
        if offset < len(answer):
            self.timer = self.loop.call_later(pause, self.stream, answer, offset, close, bandwidth)
        else:
            self.timer = self.loop.call_later(pause, self.done, close)

    def done(self, close: bool) -> None:
        self.busy = False
        if close:
            self.close()
        else:
            self.next()

    def close(self) -> None:
        """Close once what is written has gone; nothing more is read or answered."""
        if self.transport:
            self.transport.close()
            self.transport = None


async def serve(control: Connection) -> None:
    """Serve the corpus received over `control` until it closes, answering its requests for the arrivals."""
    corpus, latency, bandwidth, validators = control.recv()
    images = Images(corpus, latency, bandwidth, validators)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: ClientConnection(images), "127.0.0.1", 0, backlog=1024)
    control.send(server.sockets[0].getsockname()[1])
    stopped = loop.create_future()

    def command() -> None:
        try:
            message = control.recv()
        except (EOFError, OSError):
            message = "stop"
        # The event loop made the socket non-blocking to watch it; a long answer must be written whole.
        os.set_blocking(control.fileno(), True)
        if message == "arrivals":
            control.send({path.decode("latin-1"): arrived for path, arrived in images.arrivals.items()})
        elif message == "counts":
            control.send(dict(images.counts))
        elif not stopped.done():
            loop.remove_reader(control.fileno())
            stopped.set_result(None)

    loop.add_reader(control.fileno(), command)
    await stopped
    server.close()


def main() -> None:
    control = Connection(int(sys.argv[1]))
    try:
        # Optional: the same asyncio code on a cheaper event loop.
        import uvloop

        uvloop.run(serve(control))
    except ImportError:
        asyncio.run(serve(control))


class ImageHost:
    """The corpus served at `url(run, index)` by a process of its own (`pid`) while in a `with` block."""

    def __init__(
        self,
        corpus: list[CorpusImage],
        latency: float = 0.0,
        bandwidth: float | None = None,
        validators: bool = False,
    ) -> None:
        self.corpus = corpus
        self.latency = latency
        self.bandwidth = bandwidth
        self.validators = validators
        self.process: subprocess.Popen[bytes] | None = None
        self.control: Connection | None = None
        self.port = 0
        self.lock = threading.Lock()
        self.fetched: dict[str, float] = {}

    def __enter__(self) -> ImageHost:
        ours, theirs = socket.socketpair()
        with theirs:
            # A session of its own, as the pollers have: scheduled as a separate group, as if elsewhere.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.image_host", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.control = Connection(ours.detach())
        try:
            corpus = [(image.content_type, image.data) for image in self.corpus]
            self.control.send((corpus, self.latency, self.bandwidth, self.validators))
            if not self.control.poll(STARTUP_S):
                raise TimeoutError(f"the image host did not start within {STARTUP_S:g} s")
            self.port = self.control.recv()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        with contextlib.suppress(OSError, EOFError):
            self.fetch()
        self.stop()

    def stop(self) -> None:
        if self.control:
            # The host stops when its end of the pair closes.
            self.control.close()
            self.control = None
        if self.process:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the image host runs only inside its `with` block")
        return self.process.pid

    def fetch(self) -> dict[str, float]:
        with self.lock:
            if self.control is not None:
                self.control.send("arrivals")
                self.fetched = self.control.recv()
            return self.fetched

    def counts(self) -> dict[str, int]:
        """How many answers carried a body, and how many were 304s, since the host started."""
        with self.lock:
            if self.control is None:
                raise RuntimeError("the image host runs only inside its `with` block")
            self.control.send("counts")
            counts: dict[str, int] = self.control.recv()
            return counts

    @property
    def arrivals(self) -> dict[str, float]:
        """Path -> when (time.time()) its first request arrived: fetched from the host's process at each
        access (a copy: read it once, then look paths up in it); after the `with` block, the last ones."""
        return self.fetch()

    def url(self, run: str, index: int) -> str:
        return f"http://127.0.0.1:{self.port}/img/{index % len(self.corpus)}/{run}-{index}"

    def image_of(self, index: int) -> CorpusImage:
        return self.corpus[index % len(self.corpus)]


if __name__ == "__main__":
    main()
