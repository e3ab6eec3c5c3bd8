"""Every error answers JSON with a `detail` string, whatever the path or the failure.

A MongoDB or Redis that does not answer is a 503 with Retry-After: the clients' operations
are bounded (shared/store/clients.py, shared/queue.py), so the route fails within seconds instead of
hanging, and the client knows to try again.
"""

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError as QueueUnavailable
from pymongo.errors import ConnectionFailure, PyMongoError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from shared.errors import ServiceError

log = logging.getLogger("api.errors")

RETRY_AFTER_SECONDS = 5
MONGODB_UNAVAILABLE = ConnectionFailure  # timeouts of every kind say so in `error.timeout`
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, QueueUnavailable)


class ApiError(ServiceError):
    """A route's refusal: its HTTP status and what the client is told."""

    def __init__(self, status_code: int, message: str, **extra: object) -> None:
        super().__init__(message, http_status=status_code, extra=extra)


def describe_validation_error(error: RequestValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


def unavailable_dependency(error: Exception) -> str | None:
    """What is not answering when `error` says a server did not answer in time, else None."""
    if isinstance(error, MONGODB_UNAVAILABLE) or (isinstance(error, PyMongoError) and error.timeout):
        return "the database"
    if isinstance(error, REDIS_UNAVAILABLE):
        return "the task queue"
    return None


def internal_error_response() -> JSONResponse:
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    # A refusal of the client's input, whichever module found it: the CSV reader, the upload's
    # reader, a route. What the client is told is the error's message, never its logged detail.
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": error.message, **error.extra}, status_code=error.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": describe_validation_error(error)}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error.detail)}, status_code=error.status_code, headers=getattr(error, "headers", None)
        )

    async def dependency_error(request: Request, error: Exception) -> JSONResponse:
        dependency = unavailable_dependency(error)
        if dependency is None:
            log.error("%s %s failed", request.method, request.url.path, exc_info=error)
            return internal_error_response()
        log.warning("%s %s: %s is not answering: %s", request.method, request.url.path, dependency, error)
        return JSONResponse(
            {"detail": f"{dependency} is not answering; try again shortly"},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    for error_class in (PyMongoError, RedisError, QueueUnavailable):
        app.add_exception_handler(error_class, dependency_error)

    # Starlette runs this one outermost, answers with it, then raises the error again for
    # the server to log with its traceback.
    @app.exception_handler(Exception)
    async def internal_error(_: Request, __: Exception) -> JSONResponse:
        return internal_error_response()
