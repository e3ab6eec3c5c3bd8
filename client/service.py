"""The service's public HTTP API as the command line uses it: nothing but httpx and the documented routes."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

API = "/api/v1"
UPLOAD_ATTEMPTS = 3
RETRY_PAUSE_SECONDS = 1.0
FINAL_STATUSES = ("completed", "completed_with_errors", "failed", "cancelled")


class Unreachable(Exception):
    """The server could not be reached (or stopped answering)."""


@dataclass
class Refused(Exception):
    """The server answered with an error: its status, detail and per-line errors."""

    status_code: int
    detail: str
    errors: list[dict[str, Any]]

    def __str__(self) -> str:
        return self.detail


class Service:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def upload(self, csv_file: Path, webhook_url: str | None = None, *, refresh: bool = False) -> dict[str, Any]:
        """Upload the CSV; a connection lost on the way is retried with the same Idempotency-Key,
        so the server starts the work once however often the upload is sent. `refresh`: reuse
        nothing of earlier uploads."""
        files = {"file": (csv_file.name, csv_file.read_bytes(), "text/csv")}
        fields = {"webhook_url": webhook_url} if webhook_url else {}
        options = {
            "files": files,
            "data": {**fields, "refresh": "true"} if refresh else fields or None,
            "headers": {"Idempotency-Key": str(uuid.uuid4())},
        }
        for attempt in range(1, UPLOAD_ATTEMPTS):
            try:
                return self._json(self._send("POST", f"{API}/upload", **options))
            except Unreachable:
                time.sleep(RETRY_PAUSE_SECONDS * attempt)
        return self._json(self._send("POST", f"{API}/upload", **options))

    def status(self, request_id: str, products: int = 1000) -> dict[str, Any]:
        """The request's state and its first `products` products (at most 1000)."""
        return self._json(self._send("GET", f"{API}/status/{request_id}", params={"limit": products}))

    def requests(self, status: str | None = None, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """A page of the caller's requests, newest first."""
        params: dict[str, Any] = {
            "limit": limit,
            **({"status": status} if status else {}),
            **({"cursor": cursor} if cursor else {}),
        }
        return self._json(self._send("GET", f"{API}/requests", params=params))

    def cancel(self, request_id: str) -> dict[str, Any]:
        return self._json(self._send("POST", f"{API}/requests/{request_id}/cancel"))

    def retry(self, request_id: str) -> dict[str, Any]:
        return self._json(self._send("POST", f"{API}/requests/{request_id}/retry"))

    def delete(self, request_id: str) -> None:
        response = self._send("DELETE", f"{API}/requests/{request_id}")
        if not response.is_success:
            self._json(response)  # raises Refused with the server's reason

    def download(self, request_id: str, output: Path) -> None:
        response = self._send("GET", f"{API}/download/{request_id}")
        if not response.is_success:
            self._json(response)  # raises Refused with the server's reason
        output.write_bytes(response.content)

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **options)
        except httpx.TransportError as error:
            raise Unreachable(f"cannot reach {self._http.base_url}: {error}") from error

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.is_success:
            body: dict[str, Any] = response.json()
            return body
        try:
            body = response.json()
        except ValueError:
            body = {"detail": response.text[:200]}
        raise Refused(response.status_code, str(body.get("detail", "")), list(body.get("errors", [])))
