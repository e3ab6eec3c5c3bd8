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
`get_many` drives many exchanges from one thread through a libcurl multi handle (a re-import
batch's conditional requests), each exchange held to the same rules as `get`.
"""

from __future__ import annotations

import ipaddress
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import certifi
import pycurl

from shared import address_guard

PIN_SECONDS = 60
# libcurl's receive buffer, one a thread: larger than its 16 KiB default, so that a body reaches
# Python in fewer pieces, and no larger than a socket read gives, since the worker has many threads.
BUFFER_BYTES = 64 * 1024

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes
    seconds: float = 0.0  # the exchange's, from its start to its last byte


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

    def take_body(self) -> bytes:
        """The body received, which the transfer then lets go of: its handle keeps the transfer (its
        callbacks) until its next exchange, and every image thread and batch has handles of its own.
        Kept, the last body of each held 84 MB of the worker's memory at the mixed corpus's peak
        (tracemalloc, docs/performance.md)."""
        body = b"".join(self.chunks)
        self.chunks = []
        return body

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


@dataclass(frozen=True, slots=True)
class Pin:
    """The checked addresses of a (host, port), as libcurl's RESOLVE entries, and when they were resolved."""

    entries: list[str]
    at: float  # monotonic


@dataclass
class _Handle:
    curl: pycurl.Curl
    pins: dict[tuple[str, int], Pin] = field(default_factory=dict)


@dataclass
class _Multi:
    """A thread's libcurl multi handle: its easy handles share its connections and its pinned names."""

    multi: pycurl.CurlMulti
    idle: list[pycurl.Curl] = field(default_factory=list)
    pins: dict[tuple[str, int], Pin] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Exchange:
    """One GET of `url`, whose host and port are given."""

    url: str
    host: str
    port: int
    headers: dict[str, str]


class CurlClient:
    """GETs through one libcurl handle per thread; safe to share between threads."""

    def __init__(self, *, allow_private: bool, connect_timeout: float, read_timeout: float, max_bytes: int) -> None:
        self._allow_private = allow_private
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_bytes = max_bytes
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._multis: list[pycurl.CurlMulti] = []
        self._lock = threading.Lock()

    def get(self, url: str, host: str, port: int, headers: dict[str, str], seconds: float) -> Response:
        """The answer to a GET of `url` (whose host and port are given), within `seconds` of wall-clock time.

        Raises `BlockedAddressError` / `UnresolvableHostError` (the address guard's), `BodyTooLarge`,
        `TransferTimedOut` or `TransferFailed`.
        """
        handle = self._handle()
        curl = handle.curl
        self._pin(curl, handle.pins, host, port)
        transfer = self._prepare(curl, Exchange(url, host, port, headers), seconds)
        try:
            curl.perform()
        except pycurl.error as error:
            handle.pins.pop((host, port), None)  # a retry resolves the name again
            raise _failure(curl, transfer, error) from None
        finally:
            curl.unsetopt(pycurl.RESOLVE)
        return _response(curl, transfer)

    def get_many(
        self, exchanges: list[Exchange], at_once: int, seconds: float, keep: Callable[[Exchange, Response], T]
    ) -> list[T | Exception]:
        """Each exchange's answer as `keep` makes it (at once, so that no body is held longer), or
        the error `get` would raise; at most `at_once` under way, all driven by this thread through
        one libcurl multi handle, and every one ended within `seconds` of wall-clock time.

        Many exchanges in one thread cost far less than a thread each: no thread waits for the
        interpreter's lock as each answer arrives (measured in `docs/performance.md`)."""
        state = self._multi()
        ends_at = time.monotonic() + seconds
        results: list[T | Exception | None] = [None] * len(exchanges)
        waiting = iter(enumerate(exchanges))
        running: dict[pycurl.Curl, tuple[int, Exchange, _Transfer]] = {}

        def start(curl: pycurl.Curl) -> bool:
            """Start the next exchange on `curl`; False when none is left (the handle stays idle)."""
            for place, exchange in waiting:
                try:
                    self._pin(curl, state.pins, exchange.host, exchange.port)
                except (address_guard.BlockedAddressError, address_guard.UnresolvableHostError) as refused:
                    results[place] = refused
                    continue
                transfer = self._prepare(curl, exchange, ends_at - time.monotonic())
                running[curl] = (place, exchange, transfer)
                state.multi.add_handle(curl)
                return True
            state.idle.append(curl)
            return False

        def end(curl: pycurl.Curl, error: pycurl.error | None) -> None:
            place, exchange, transfer = running.pop(curl)
            state.multi.remove_handle(curl)
            curl.unsetopt(pycurl.RESOLVE)
            if error is None:
                try:
                    results[place] = keep(exchange, _response(curl, transfer))
                except Exception as refused:  # noqa: BLE001 - the caller's verdict on the answer, kept as its result
                    results[place] = refused
            else:
                state.pins.pop((exchange.host, exchange.port), None)
                results[place] = _failure(curl, transfer, error)
            start(curl)

        try:
            for _ in range(max(1, at_once)):
                if not start(state.idle.pop() if state.idle else self._new_curl()):
                    break
            while running:
                while state.multi.perform()[0] == pycurl.E_CALL_MULTI_PERFORM:
                    pass
                while True:
                    queued, ended, failed = state.multi.info_read()
                    for curl in ended:
                        end(curl, None)
                    for curl, code, message in failed:
                        end(curl, pycurl.error(code, message))
                    if not queued:
                        break
                if running:
                    state.multi.select(_wait_seconds(state.multi, ends_at))
        finally:
            # Whatever broke off the loop, the thread's next call finds its multi handle empty.
            for curl in running:
                state.multi.remove_handle(curl)
                curl.unsetopt(pycurl.RESOLVE)
                state.idle.append(curl)
        return cast("list[T | Exception]", results)  # each place set as its exchange ended

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
            multis, self._multis = self._multis, []
        for multi in multis:
            multi.close()
        for curl in handles:
            curl.close()

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = _Handle(self._new_curl())
            self._local.handle = handle
        return handle

    def _multi(self) -> _Multi:
        state: _Multi | None = getattr(self._local, "multi", None)
        if state is None:
            state = _Multi(pycurl.CurlMulti())
            self._local.multi = state
            with self._lock:
                self._multis.append(state.multi)
        return state

    def _prepare(self, curl: pycurl.Curl, exchange: Exchange, seconds: float) -> _Transfer:
        """Set `curl` up for the exchange, to end within `seconds`; what it receives goes to the _Transfer."""
        transfer = _Transfer(self._max_bytes, self._allow_private)
        curl.setopt(pycurl.URL, exchange.url)
        curl.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in exchange.headers.items()])
        curl.setopt(pycurl.TIMEOUT_MS, max(1, math.ceil(seconds * 1000)))
        curl.setopt(pycurl.HEADERFUNCTION, transfer.header)
        curl.setopt(pycurl.WRITEFUNCTION, transfer.body)
        curl.setopt(pycurl.OPENSOCKETFUNCTION, transfer.open_socket)
        curl.setopt(pycurl.PREREQFUNCTION, transfer.ready_to_send)
        return transfer

    def _new_curl(self) -> pycurl.Curl:
        curl = pycurl.Curl()
        with self._lock:
            self._handles.append(curl)
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

    def _pin(self, curl: pycurl.Curl, pins: dict[tuple[str, int], Pin], host: str, port: int) -> None:
        """Hand libcurl the checked addresses of `host` (so it never resolves a name itself), resolved
        again once `PIN_SECONDS` have passed."""
        pin = pins.get((host, port))
        if pin is None or time.monotonic() - pin.at >= PIN_SECONDS:
            addresses = address_guard.checked_addresses(host, port, self._allow_private)
            listed = ",".join(f"[{address}]" if ":" in address else address for address in addresses)
            pin = pins[(host, port)] = Pin([f"-{host}:{port}", f"{host}:{port}:{listed}"], time.monotonic())
        curl.setopt(pycurl.RESOLVE, pin.entries)


def _wait_seconds(multi: pycurl.CurlMulti, ends_at: float) -> float:
    """How long to wait for the multi handle's sockets: what libcurl asks (0 once a transfer was just
    added, which it must start first), at most a second, and never past the end."""
    asked = multi.timeout()  # milliseconds; -1 when libcurl has no timer set
    wait = 1.0 if asked < 0 else asked / 1000
    return max(0.0, min(wait, 1.0, ends_at - time.monotonic()))


def _response(curl: pycurl.Curl, transfer: _Transfer) -> Response:
    body = transfer.take_body()
    return Response(curl.getinfo(pycurl.RESPONSE_CODE), transfer.headers, body, curl.getinfo(pycurl.TOTAL_TIME))


def _failure(curl: pycurl.Curl, transfer: _Transfer, error: pycurl.error) -> Exception:
    transfer.take_body()  # a part of a body, of no use now
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
