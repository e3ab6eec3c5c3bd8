"""One shape for everything that can fail an image or a request, as imgproxy's `ierrors`.

A `ServiceError` says four things:

- `message`: what a client sees (in the status, the processing log, a `detail`). It never says what
  a host name resolved to or how a connection failed inside our network.
- `detail`: what the log records; the message unless there is more to say.
- `retryable`: whether trying the same thing again may go differently (a timeout, a 503).
- `http_status`: the API's answer where the error reaches it (400 for a bad CSV, 413 past a limit).

Each failure is a subclass named for what went wrong (`TooLarge`, `DownloadTimeout`,
`ImageTooLarge`), with its message built from what it knows. Anything else that escapes is wrapped
as an `InternalError`, so whoever handles a failure needs one `except`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import ClassVar


class ServiceError(Exception):
    """Something that failed an image or a request, with what to tell the client and the log."""

    retryable: bool = False
    http_status: int = 500
    # How loudly the worker logs it: a refused image is routine, a failing codec is not.
    log_level: ClassVar[int] = logging.INFO

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        retryable: bool | None = None,
        http_status: int | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or message
        if retryable is not None:
            self.retryable = retryable
        if http_status is not None:
            self.http_status = http_status
        # Whatever else the API's answer carries beside `detail` (a CSV's `errors`, say).
        self.extra = dict(extra or {})

    @staticmethod
    def of(error: BaseException) -> ServiceError:
        """`error` as a ServiceError: itself, or an internal error that keeps it as its cause."""
        if isinstance(error, ServiceError):
            return error
        internal = InternalError(detail=f"{type(error).__name__}: {error}")
        internal.__cause__ = error
        return internal


class InternalError(ServiceError):
    """A failure that says nothing about the client's input: a bug, a process that died. The client
    is told only that; the log gets the cause, with its traceback."""

    log_level = logging.ERROR
    MESSAGE = "internal error while processing this image"

    def __init__(self, message: str = MESSAGE, *, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)


class OutOfTime(ServiceError):
    """The product's time ran out before this image could be (tried again and) finished."""

    def __init__(self, detail: str | None = None) -> None:
        super().__init__("not finished within the product's time limit", detail=detail)
