"""A webhook endpoint that records every delivery and fails on request."""

import threading
from collections import Counter, defaultdict
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.http_server import BackgroundServer, QuietHandler


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    answered: int


class Handler(QuietHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        owner: WebhookReceiver = self.server.owner
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = urlsplit(self.path).path
        # /hook/<name>/<failures>: answer 500 to the first <failures> deliveries.
        parts = path.strip("/").split("/")
        failures = int(parts[2]) if len(parts) > 2 else 0
        with owner.lock:
            owner.counts[path] += 1
            status = 500 if owner.counts[path] <= failures else 200
            owner.deliveries[path].append(Delivery(dict(self.headers.items()), body, status))
        self.send_bytes(status, b"ok" if status == 200 else b"fail")


class WebhookReceiver(BackgroundServer):
    handler = Handler

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.deliveries: defaultdict[str, list[Delivery]] = defaultdict(list)

    def hook(self, name: str, failures: int = 0) -> str:
        return f"{self.url}/hook/{name}/{failures}"

    def received(self, name: str, failures: int = 0) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries[f"/hook/{name}/{failures}"])
