"""CORS for the origins in `CORS_ORIGINS` only (no CORS headers at all while it is unset).

Browsers on those origins may call the API with the methods and headers it uses; they can read
`X-Request-ID` and `Retry-After`. Credentials (cookies) are not allowed: the API's credential is
an API key sent in a header, which needs no cookie.
"""

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse, Response

ALLOWED_METHODS = ["GET", "POST", "OPTIONS"]
ALLOWED_HEADERS = ["Authorization", "X-API-Key", "Idempotency-Key", "Content-Type"]
EXPOSED_HEADERS = ["X-Request-ID", "Retry-After"]
PREFLIGHT_MAX_AGE_SECONDS = 600


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORSMiddleware, whose refused preflight answers JSON like every other error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code == 200:
            return response
        headers = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in ("content-length", "content-type")
        }
        return JSONResponse(
            {"detail": bytes(response.body).decode()}, status_code=response.status_code, headers=headers
        )


def install_cors(app: FastAPI, origins: list[str]) -> None:
    if not origins:
        return
    app.add_middleware(
        JsonCORSMiddleware,
        allow_origins=origins,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=EXPOSED_HEADERS,
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )
