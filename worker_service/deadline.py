"""Wall-clock deadlines on httpx's connections (the webhooks') to peers that may be slow on purpose.

A per-read timeout does not bound an exchange: a webhook receiver that sends its answer
one byte a second never lets a single read wait long. So
under `deadline(seconds)`, every connect, read, write and TLS handshake on a connection
made through `DeadlineNetworkBackend` may wait only for the time left, and fails at once
when none is: whatever the peer does, the thread is free again at the deadline. (CPython
bounds a TLS handshake and a `sendall` by their timeout as a whole, not per byte.)

The deadline travels in a context variable, so only the thread that entered it is bound,
and a pooled connection obeys the deadline of whoever uses it now. Name resolution is
the system resolver's, bounded by its own timeouts (resolv.conf).
"""

from __future__ import annotations

import contextlib
import ssl
import time
import typing
from collections.abc import Iterator
from contextvars import ContextVar

import httpcore

_current: ContextVar[Deadline | None] = ContextVar("deadline", default=None)


class DeadlineExpired(httpcore.TimeoutException):
    """No time is left. An httpcore timeout, so httpx reports it as `httpx.TimeoutException`."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"deadline of {seconds:g} s passed")


class Deadline:
    """A point in monotonic time by which the work must be over (a download's attempt is one too)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def bound(self, timeout: float | None) -> float:
        """`timeout` shortened to the time left; raises `DeadlineExpired` when none is."""
        remaining = self.remaining()
        if remaining <= 0:
            raise DeadlineExpired(self.seconds)
        return remaining if timeout is None else min(timeout, remaining)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Deadline]:
    """Bound the connections this thread makes or uses through `DeadlineNetworkBackend` to `seconds`."""
    current = Deadline(seconds)
    token = _current.set(current)
    try:
        yield current
    finally:
        _current.reset(token)


def _bounded(timeout: float | None) -> float | None:
    current = _current.get()
    return timeout if current is None else current.bound(timeout)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation obeys the deadline of the thread using it."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout))

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def close(self) -> None:
        self._inner.close()

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class DeadlineNetworkBackend(httpcore.NetworkBackend):
    """Wraps another backend (the address guard's) so that its connections obey deadlines."""

    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _bounded(timeout), local_address, socket_options)
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)
