"""One HTTP GET through libcurl (pycurl), to checked addresses only, within a wall-clock limit.

The image downloads are the worker's hottest HTTP calls: libcurl does the exchange in C for
about a fifth of httpx's CPU a body (`docs/performance.md`). The downloader (worker_service/
downloader.py) keeps the policy (retries, redirects, size and status rules, errors for users);
this module only makes one exchange and says how it ended.

What holds against a hostile host:
- Every address is the address guard's: the host is resolved by `address_guard.resolve`, every
  address it resolves to is checked, and libcurl is handed exactly those (`CURLOPT_RESOLVE`),
  so it never resolves a name itself. Each socket it opens is checked once more before it
  connects. A resolution is kept for `PIN_SECONDS` (a name's addresses may change; a connection
  already made to a checked address may go on being used), and dropped when an exchange with
  the host fails, so that a retry resolves again.
- The exchange ends at the caller's wall-clock limit (`CURLOPT_TIMEOUT_MS`, enforced by libcurl
  whatever the host sends, TLS handshake included), a connection must be made within the
  connect timeout, and a host that sends nothing for the read timeout is cut
  (`CURLOPT_LOW_SPEED_*`).
- The body is counted as it arrives, whatever Content-Length says, and the exchange is abandoned
  past `max_bytes`; a declared length over it is refused before the body (`CURLOPT_MAXFILESIZE`).
- No proxy from the environment, no cookies, only http and https, no redirect followed.

Handles are per thread (a libcurl handle is not to be shared), each with its own connections.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import certifi
import pycurl

from shared import address_guard

PIN_SECONDS = 60
# libcurl's receive buffer, one a thread: larger than its 16 KiB default, so that a body reaches
# Python in fewer pieces, and no larger than a socket read gives, since the worker has many threads.
BUFFER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


class TransferFailed(Exception):
    """The exchange ended without an answer; `detail` is libcurl's account, for the log only."""

    def __init__(self, detail: str, *, before_connecting: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.before_connecting = before_connecting  # no connection was made


class TransferTimedOut(TransferFailed):
    """libcurl stopped the exchange at one of its time limits (which one, the caller works out)."""


class BodyTooLarge(Exception):
    """More than `max_bytes` were declared or arrived."""


@dataclass
class _Transfer:
    """What one exchange has received so far, and why it was stopped, if it was."""

    max_bytes: int
    allow_private: bool
    connected: bool = False  # a connection was made or reused, its TLS handshake done
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    received: int = 0
    too_large: bool = False
    blocked: address_guard.BlockedAddressError | None = None

    def header(self, line: bytes) -> None:
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text.startswith("HTTP/"):  # a new response (after a 100 Continue): its own headers
            self.headers = {}
            return
        name, colon, value = text.partition(":")
        if colon:
            self.headers[name.strip().lower()] = value.strip()

    def body(self, chunk: bytes) -> int | None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            self.too_large = True
            return 0  # anything but the chunk's length makes libcurl abandon the exchange
        self.chunks.append(chunk)
        return None

    def ready_to_send(self, *_: object) -> int:
        self.connected = True
        return pycurl.PREREQFUNC_OK

    def open_socket(self, purpose: int, address: Any) -> socket.socket | int:
        family, socktype, protocol, (host, *_) = address
        try:
            address_guard.check_address(ipaddress.ip_address(host), self.allow_private)
        except address_guard.BlockedAddressError as blocked:
            self.blocked = blocked
            return pycurl.SOCKET_BAD
        return socket.socket(family, socktype, protocol)


@dataclass
class _Handle:
    curl: pycurl.Curl
    pins: dict[tuple[str, int], float] = field(default_factory=dict)  # (host, port): pinned at (monotonic)


class CurlClient:
    """GETs through one libcurl handle per thread; safe to share between threads."""

    def __init__(self, *, allow_private: bool, connect_timeout: float, read_timeout: float, max_bytes: int) -> None:
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_bytes = max_bytes
        self._local = threading.local()
        self._handles: list[_Handle] = []
        self._lock = threading.Lock()

    def get(self, url: str, host: str, port: int, headers: dict[str, str], seconds: float) -> Response:
        """The answer to a GET of `url` (whose host and port are given), within `seconds` of wall-clock time.

        Raises `BlockedAddressError` / `UnresolvableHostError` (the address guard's), `BodyTooLarge`,
        `TransferTimedOut` or `TransferFailed`.
        """
        handle = self._handle()
        curl = handle.curl
        self._pin(handle, host, port)
        transfer = _Transfer(self._max_bytes, self._allow_private)
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()])
        curl.setopt(pycurl.TIMEOUT_MS, max(1, math.ceil(seconds * 1000)))
        curl.setopt(pycurl.HEADERFUNCTION, transfer.header)
        curl.setopt(pycurl.WRITEFUNCTION, transfer.body)
        curl.setopt(pycurl.OPENSOCKETFUNCTION, transfer.open_socket)
        curl.setopt(pycurl.PREREQFUNCTION, transfer.ready_to_send)
        try:
            curl.perform()
        except pycurl.error as error:
            handle.pins.pop((host, port), None)  # a retry resolves the name again
            raise _failure(curl, transfer, error) from None
        finally:
            curl.unsetopt(pycurl.RESOLVE)
        return Response(curl.getinfo(pycurl.RESPONSE_CODE), transfer.headers, b"".join(transfer.chunks))

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.curl.close()

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = _Handle(self._new_curl())
            self._local.handle = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def _new_curl(self) -> pycurl.Curl:
        curl = pycurl.Curl()
        curl.setopt(pycurl.NOSIGNAL, 1)
        curl.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        curl.setopt(pycurl.FOLLOWLOCATION, 0)
        curl.setopt(pycurl.PROXY, "")  # not from the environment: a proxy would connect past the guard
        curl.setopt(pycurl.NOPROXY, "*")
        curl.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        curl.setopt(pycurl.CAINFO, certifi.where())
        curl.setopt(pycurl.CONNECTTIMEOUT_MS, max(1, math.ceil(self._connect_timeout * 1000)))
        curl.setopt(pycurl.LOW_SPEED_LIMIT, 1)
        curl.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(self._read_timeout)))
        curl.setopt(pycurl.MAXFILESIZE_LARGE, self._max_bytes)
        curl.setopt(pycurl.BUFFERSIZE, BUFFER_BYTES)
        return curl

    def _pin(self, handle: _Handle, host: str, port: int) -> None:
        """Hand libcurl the checked addresses of `host`, resolved again once `PIN_SECONDS` have passed."""
        pinned_at = handle.pins.get((host, port))
        if pinned_at is not None and time.monotonic() - pinned_at < PIN_SECONDS:
            return
        addresses = address_guard.checked_addresses(host, port, self._allow_private)
        listed = ",".join(f"[{address}]" if ":" in address else address for address in addresses)
        handle.curl.setopt(pycurl.RESOLVE, [f"-{host}:{port}", f"{host}:{port}:{listed}"])
        handle.pins[(host, port)] = time.monotonic()


def _failure(curl: pycurl.Curl, transfer: _Transfer, error: pycurl.error) -> Exception:
    code, message = error.args[0], error.args[-1]
    if transfer.blocked is not None:
        return transfer.blocked
    if transfer.too_large or code == pycurl.E_FILESIZE_EXCEEDED:
        return BodyTooLarge()
    detail = f"libcurl error {code}: {message}"
    if errno := curl.getinfo(pycurl.OS_ERRNO):  # the system's reason, such as "Connection refused"
        detail += f" ({os.strerror(errno)})"
    if code == pycurl.E_OPERATION_TIMEDOUT:
        return TransferTimedOut(detail, before_connecting=not transfer.connected)
    return TransferFailed(detail, before_connecting=not transfer.connected)
