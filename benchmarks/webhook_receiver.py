"""A local webhook receiver: answers every delivery at once and notes when each request's arrived."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

from benchmarks.image_host import QuietServer

# A delivery starts once the request is final; one that has not come by then is not coming.
WEBHOOK_WAIT_S = 60.0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:
        # Taken before the body is read: the moment the delivery reached this machine.
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver: WebhookReceiver = self.server.receiver
        receiver.record(request_id_of(body), arrived)
        # At once and empty: the receiver must never be what holds a delivery up.
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()


def request_id_of(body: bytes) -> str | None:
    try:
        return str(json.loads(body)["data"]["request_id"])
    except (ValueError, KeyError, TypeError):
        return None


class WebhookReceiver:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.deliveries: dict[str, int] = {}
        self.changed = threading.Condition()

    def record(self, request_id: str | None, arrived: float) -> None:
        if request_id is None:
            return
        with self.changed:
            # The first delivery is the one that counts; a retry would only say the first failed.
            self.arrivals.setdefault(request_id, arrived)
            self.deliveries[request_id] = self.deliveries.get(request_id, 0) + 1
            self.changed.notify_all()

    def wait_for(self, request_id: str, timeout: float) -> float | None:
        """When the request's first delivery arrived (time.time()), or None if none came within `timeout` s."""
        with self.changed:
            self.changed.wait_for(lambda: request_id in self.arrivals, timeout)
            return self.arrivals.get(request_id)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/webhook"

    def __enter__(self) -> "WebhookReceiver":
        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.server.receiver = self
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
