"""POST /api/v1/upload: validate a CSV, store the request, enqueue its work."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pymongo.errors import DuplicateKeyError
from structlog.contextvars import bind_contextvars

from api_service import answers
from api_service.auth import Owner, scoped_idempotency_key
from api_service.csv_reader import ProductRow, read_products
from api_service.errors import ApiError
from api_service.rate_limits import limit_uploads
from api_service.schemas import UploadAccepted, error_responses, request_links
from api_service.sending import send
from api_service.state import AppState, services
from api_service.upload_stream import Upload, read_upload
from api_service.validation import idempotency_key_problem, webhook_url_problem
from shared import metrics
from shared.models import utcnow
from shared.queue import enqueue_request
from shared.store import requests
from shared.store.requests import new_request, new_request_id

router = APIRouter()

MULTIPART_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "the product CSV: S. No., Product Name, Input Image Urls",
                        },
                        "webhook_url": {
                            "type": "string",
                            "format": "uri",
                            "description": "optional: notified with a signed POST when the request is finished",
                            "example": "https://shop.example.com/hooks/images",
                        },
                        "refresh": {
                            "type": "boolean",
                            "default": False,
                            "description": "true: ignore what earlier requests left (re-imports) and process "
                            "every image from scratch",
                        },
                    },
                }
            }
        },
    }
}


async def validate(upload: Upload, state: AppState) -> list[ProductRow]:
    """The products, or the error (a 400 or 413 in one shape, shared/errors.py) saying what is wrong."""
    if upload.webhook_url and (problem := webhook_url_problem(upload.webhook_url, state.settings)):
        raise ApiError(
            400, f"invalid webhook_url: {problem}", errors=[{"line": 0, "column": "webhook_url", "message": problem}]
        )
    return await run_in_threadpool(read_products, upload.file, state.settings.limits)


async def replay(state: AppState, key: str, sha256: str) -> JSONResponse | None:
    """The answer already given for this Idempotency-Key, if any."""
    existing = await state.store.run(requests.find_by_idempotency_key(key))
    if existing is None:
        return None
    if not requests.same_file(existing, sha256):
        raise ApiError(422, "this Idempotency-Key was already used with a different file")
    return answers.accepted(state, existing)


@router.post(
    "/api/v1/upload",
    status_code=202,
    response_model=UploadAccepted,
    responses={202: {"links": request_links("/request_id")}, **error_responses(400, 413, 422, 503)},
    summary="Upload a product CSV",
    openapi_extra=MULTIPART_BODY,
    tags=["requests"],
    dependencies=[Depends(limit_uploads)],
)
async def upload_csv(
    request: Request,
    state: Annotated[AppState, Depends(services)],
    owner: Owner,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="makes a retried upload safe")
    ] = None,
) -> JSONResponse:
    """Accepts the CSV at once with a request id; images are processed in the background."""
    if idempotency_key is not None and (problem := idempotency_key_problem(idempotency_key)):
        raise ApiError(400, problem)
    if idempotency_key:
        # Scoped to the caller's key: two clients using the same Idempotency-Key never meet.
        idempotency_key = scoped_idempotency_key(idempotency_key, owner)
    upload = await read_upload(request, state.settings.limits.max_upload_bytes)
    try:
        if idempotency_key and (previous := await replay(state, idempotency_key, upload.sha256)):
            return previous
        rows = await validate(upload, state)
    finally:
        upload.file.close()

    request_id = new_request_id()
    document = new_request(
        request_id,
        rows,
        now=utcnow(),
        webhook_url=upload.webhook_url,
        idempotency_key=idempotency_key,
        file_sha256=upload.sha256,
        owner=owner,
        refresh=upload.refresh,
    )
    bind_contextvars(request_id=request_id)
    try:
        await state.store.run(requests.insert(document))
    except DuplicateKeyError:
        # Another upload with the same key won the race; answer as it was answered.
        if idempotency_key and (previous := await replay(state, idempotency_key, upload.sha256)):
            return previous
        raise
    # Counted once stored: from here on the request is processed, whatever happens to the API.
    metrics.REQUESTS_ACCEPTED.inc()
    answers.seed_first_page(state, document)
    await send("start", request_id, partial(enqueue_request, state.celery, request_id))
    return answers.accepted(state, document)


for alias in ("/api/upload", "/upload", "/upload/"):
    router.add_api_route(
        alias,
        upload_csv,
        methods=["POST"],
        status_code=202,
        include_in_schema=False,
        dependencies=[Depends(limit_uploads)],
    )
