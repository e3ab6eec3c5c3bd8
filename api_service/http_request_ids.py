"""An id for every HTTP request: on every line logged while it is handled, and in its answer.

The id is the client's `X-Request-ID` when that is a sane token, so a client or a proxy can
follow its own id through the logs; otherwise a new one. Not to be confused with the id of
an uploaded request (`request_id`), which the routes that know it bind next to it.
"""

import re
import uuid

import structlog
from fastapi import FastAPI
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
# Visible ASCII only: no spaces, control characters or line breaks to forge log lines with.
SANE_REQUEST_ID = re.compile(r"[!-~]{1,128}")


def http_request_id(incoming: str | None) -> str:
    """The client's id if it is sane, else a new one."""
    if incoming is not None and SANE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class HttpRequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware), so streamed answers pass through as they are sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = http_request_id(Headers(scope=scope).get(HEADER))
        # Bound for the rest of this request's task and not reset on the way out: the server
        # logs a failed request's traceback after the app has returned, in the same task.
        # Each request is a task of its own, so nothing carries over to the next one.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(http_request_id=request_id)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_request_id)


class FastAPIWithHttpRequestIds(FastAPI):
    """FastAPI with HttpRequestIdMiddleware outermost: outside Starlette's error middleware too
    (which add_middleware cannot reach), so that a 500 carries the header and its traceback the id."""

    def build_middleware_stack(self) -> ASGIApp:
        return HttpRequestIdMiddleware(super().build_middleware_stack())
