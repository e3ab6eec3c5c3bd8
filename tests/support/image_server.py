"""The image hosts the tests download from: real images, failures, slowness and redirects."""

import hashlib
import threading
import time
from collections import Counter, defaultdict
from urllib.parse import urlsplit

from tests.support import images
from tests.support.http_server import BackgroundServer, QuietHandler


def build_library() -> dict[str, tuple[bytes, str]]:
    photo = images.photo()
    return {
        "photo.jpg": (images.encode(photo, "JPEG", quality=92), "image/jpeg"),
        "photo2.jpg": (images.encode(images.photo(640, 480, seed=2), "JPEG", quality=90), "image/jpeg"),
        "photo.png": (images.encode(images.photo(300, 200, seed=3), "PNG"), "image/png"),
        "photo.webp": (images.encode(images.photo(400, 300, seed=4), "WEBP", quality=95), "image/webp"),
        "photo.bmp": (images.encode(images.photo(200, 150, seed=5), "BMP"), "image/bmp"),
        "anim.gif": (images.animated_gif(), "image/gif"),
        "exif.jpg": (images.jpeg_with_metadata(), "image/jpeg"),
        "tiny.jpg": (images.encode(images.photo(64, 48, seed=6), "JPEG", quality=10), "image/jpeg"),
        "bomb.png": (images.bomb_png(), "image/png"),
        "animation-bomb.gif": (images.animation_bomb_gif(), "image/gif"),
        # Served as image/jpeg on purpose: the type is judged by the bytes.
        "page.jpg": (b"<html><body>Not found, but 200</body></html>", "image/jpeg"),
    }


class Handler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        owner: ImageServer = self.server.owner
        path = urlsplit(self.path).path
        owner.hits[path] += 1
        parts = path.strip("/").split("/")
        route = getattr(self, f"route_{parts[0]}", None)
        if route is None:
            self.send_bytes(404, b"no such route")
            return
        route(owner, *parts[1:])

    do_POST = do_GET  # noqa: N815 - lets a webhook be pointed at a redirect

    def serve_image(self, owner: "ImageServer", name: str) -> None:
        if name not in owner.library:
            self.send_bytes(404, b"no such image")
            return
        body, content_type = owner.library[name]
        self.send_bytes(200, body, content_type)

    def route_img(self, owner: "ImageServer", name: str) -> None:
        self.serve_image(owner, name)

    def route_validated(self, owner: "ImageServer", name: str) -> None:
        """The image with an ETag (its bytes' digest) and a Last-Modified; a 304 to a request whose
        If-None-Match names the current ETag (re-imports)."""
        if name not in owner.library:
            self.send_bytes(404, b"no such image")
            return
        body, content_type = owner.library[name]
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        validators = {"ETag": etag, "Last-Modified": "Sun, 06 Dec 2026 10:00:00 GMT"}
        conditions = {h: self.headers[h] for h in ("If-None-Match", "If-Modified-Since") if h in self.headers}
        with owner.lock:
            owner.conditions[self.path].append(conditions)
        if conditions.get("If-None-Match") == etag:
            self.send_bytes(304, b"", content_type, headers=validators)
            return
        with owner.lock:
            owner.bodies[self.path] += 1
        self.send_bytes(200, body, content_type, headers=validators)

    def route_stalls_once(self, owner: "ImageServer", seconds: str, name: str) -> None:
        """As /validated, but the first request that comes with conditions gets no answer for
        `seconds` (a host slow once, at a re-import's check); it is counted among the conditions."""
        with owner.lock:
            first = "If-None-Match" in self.headers and self.path not in owner.stalled
            if first:
                owner.stalled.add(self.path)
                owner.conditions[self.path].append({"If-None-Match": self.headers["If-None-Match"]})
        if first:
            time.sleep(float(seconds))
            return
        self.route_validated(owner, name)

    def route_gated(self, owner: "ImageServer", gate: str, name: str) -> None:
        """404 until the test opens the gate, then the image (a host that was down, then is back)."""
        if gate in owner.open_gates:
            self.serve_image(owner, name)
        else:
            self.send_bytes(404, b"not yet")

    def route_status(self, owner: "ImageServer", code: str) -> None:
        self.send_bytes(int(code), b"status")

    def route_flaky(self, owner: "ImageServer", key: str, failures: str, name: str) -> None:
        """503 for the first `failures` requests of `key`, then the image."""
        with owner.lock:
            owner.flaky[key] += 1
            attempt = owner.flaky[key]
        if attempt <= int(failures):
            self.send_bytes(503, b"try again")
        else:
            self.serve_image(owner, name)

    def route_delay(self, owner: "ImageServer", seconds: str, name: str) -> None:
        time.sleep(float(seconds))
        self.serve_image(owner, name)

    def route_trickle(self, owner: "ImageServer", *_: str) -> None:
        """Headers at once, then a byte every half second, for a minute."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", "120")
        self.end_headers()
        try:
            for _ in range(120):
                self.wfile.write(b"\xff")
                self.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass

    def route_slow_headers(self, owner: "ImageServer", *_: str) -> None:
        """A status line and headers one byte every 0.2 s, for minutes: no single read waits long."""
        head = b"HTTP/1.1 200 OK\r\n" + b"X-Padding: " + b"p" * 4000 + b"\r\n\r\n"
        self.trickle_bytes(head, interval=0.2)

    def route_endless(self, owner: "ImageServer", *_: str) -> None:
        """Headers at once, then a chunked body of one byte every 0.1 s that never ends."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.trickle_bytes(b"1\r\n\xff\r\n" * 100_000, interval=0.1, piece=6)

    def route_huge(self, owner: "ImageServer", megabytes: str) -> None:
        """An answer of many MB, sent as fast as it is read, with no Content-Length to refuse it by."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Connection", "close")
        self.end_headers()
        piece = b"\xff" * 65536
        try:
            for _ in range(int(megabytes) * 16):
                self.wfile.write(piece)
        except OSError:
            pass
        self.close_connection = True

    def trickle_bytes(self, data: bytes, interval: float, piece: int = 1) -> None:
        try:
            for start in range(0, len(data), piece):
                self.wfile.write(data[start : start + piece])
                self.wfile.flush()
                time.sleep(interval)
        except OSError:
            pass  # the client gave up, as it should

    def route_redirect(self, owner: "ImageServer", hops: str, name: str) -> None:
        remaining = int(hops)
        target = f"/img/{name}" if remaining <= 1 else f"/redirect/{remaining - 1}/{name}"
        self.send_bytes(302, b"", headers={"Location": target})


class ImageServer(BackgroundServer):
    handler = Handler

    def __init__(self) -> None:
        self.library = build_library()
        self.hits: Counter[str] = Counter()
        # Of the /validated route: the bodies sent, and the conditions each request came with, by path.
        self.bodies: Counter[str] = Counter()
        self.open_gates: set[str] = set()
        self.stalled: set[str] = set()
        self.conditions: defaultdict[str, list[dict[str, str]]] = defaultdict(list)
        self.flaky: Counter[str] = Counter()
        self.lock = threading.Lock()

    def image(self, name: str) -> str:
        return f"{self.url}/img/{name}"
