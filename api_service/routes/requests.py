"""A caller's requests: list them, cancel one, retry its failed images, delete it (CONTRACT §4)."""

import asyncio
import base64
import binascii
import json
import time
from datetime import datetime
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from structlog.contextvars import bind_contextvars

from api_service import answers
from api_service.auth import Owner
from api_service.errors import ApiError
from api_service.schemas import RequestList, RequestListItem, error_responses, request_links
from api_service.sending import send
from api_service.state import AppState, services
from shared.models import RequestStatus, StatusView, utcnow
from shared.queue import enqueue_cancel, enqueue_delete, enqueue_request
from shared.store import requests
from shared.store.requests import RequestSummary, RetryRefused
from shared.views import progress_of

router = APIRouter(tags=["requests"])

DEFAULT_LIST = 50
# A DELETE answers once the control worker has deleted the request's images and documents, which
# takes well under a second; past this it answers anyway, the deletion going on (the sweeper sees to it).
DELETE_WAIT_SECONDS = 10.0
DELETE_LOOK_SECONDS = 0.1


def cursor_of(summary: RequestSummary) -> str:
    """Where the next page starts: after this request, in newest-first order (opaque to clients)."""
    place = json.dumps([summary["created_at"].isoformat(), summary["_id"]])
    return base64.urlsafe_b64encode(place.encode()).decode().rstrip("=")


def place_of(cursor: str) -> tuple[datetime, str]:
    try:
        created_at, request_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created_at), str(request_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(400, "invalid cursor: pass the next_cursor of the previous page as it was") from None


def list_item(summary: RequestSummary) -> RequestListItem:
    return RequestListItem(
        request_id=summary["_id"],
        status=RequestStatus(summary["status"]),
        created_at=summary["created_at"],
        completed_at=summary["completed_at"],
        products=summary["products_total"],
        images=summary["images_total"],
        progress=progress_of(summary),
    )


@router.get(
    "/api/v1/requests",
    response_model=RequestList,
    responses=error_responses(400, 422, 503),
    summary="The caller's requests, newest first",
)
async def list_requests(
    state: Annotated[AppState, Depends(services)],
    owner: Owner,
    status: Annotated[RequestStatus | None, Query(description="only requests in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="requests a page")] = DEFAULT_LIST,
    cursor: Annotated[str | None, Query(description="the next_cursor of the previous page")] = None,
) -> RequestList:
    """Only the caller's own requests (every request while API keys are off), a page at a time."""
    after = place_of(cursor) if cursor else None
    found = await state.store.run(requests.newest_first(owner, status, limit + 1, after))
    page = found[:limit]
    more = len(found) > limit
    return RequestList(requests=[list_item(s) for s in page], next_cursor=cursor_of(page[-1]) if more else None)


async def current_status(state: AppState, request_id: str, owner: str | None) -> Response:
    state.status_cache.forget(request_id)
    body = await answers.status_page(state, request_id, owner, 0, answers.DEFAULT_PAGE)
    if body is None:
        raise ApiError(404, "request not found")
    return Response(body, status_code=202, media_type="application/json")


async def refused_because(state: AppState, request_id: str, owner: str | None, wanted: str) -> ApiError:
    """Why a request cannot be changed: it is not there (404), or not in the state it must be (409)."""
    summary = await state.store.run(requests.find_summary(request_id, owner))
    if summary is None:
        return ApiError(404, "request not found")
    return ApiError(409, f"the request is {summary['status']}; {wanted}")


STATUS_ANSWER: dict[int | str, dict[str, Any]] = {
    202: {
        "model": StatusView,
        "description": "The request's status, as GET /status answers",
        "links": request_links("/request_id"),
    }
}


@router.post(
    "/api/v1/requests/{request_id}/cancel",
    status_code=202,
    responses={**STATUS_ANSWER, **error_responses(404, 409, 503)},
    summary="Cancel a request",
)
async def cancel_request(request_id: str, state: Annotated[AppState, Depends(services)], owner: Owner) -> Response:
    """Its images not started are never started; those under way may finish. It is final,
    `cancelled`, within seconds; each image never done fails with `cancelled`."""
    bind_contextvars(request_id=request_id)
    if await state.store.run(requests.ask_to_cancel(request_id, owner, utcnow())) is None:
        raise await refused_because(state, request_id, owner, "only an unfinished request can be cancelled")
    await send("cancel", request_id, partial(enqueue_cancel, state.celery, request_id, owner))
    return await current_status(state, request_id, owner)


@router.post(
    "/api/v1/requests/{request_id}/retry",
    status_code=202,
    responses={**STATUS_ANSWER, **error_responses(404, 409, 503)},
    summary="Process a finished request's failed images again",
)
async def retry_request(request_id: str, state: Annotated[AppState, Depends(services)], owner: Owner) -> Response:
    """Only its failed (or never started) images are processed again, in the same request; the
    others keep their outputs. It is final again when they are done, with a new webhook delivery."""
    bind_contextvars(request_id=request_id)
    refused = await state.store.run(requests.retry(request_id, owner, utcnow()))
    if refused is RetryRefused.NOT_FOUND:
        raise ApiError(404, "request not found")
    if refused is RetryRefused.NOTHING_FAILED:
        raise ApiError(409, "no image of this request failed: there is nothing to retry")
    if refused is RetryRefused.NOT_FINAL:
        raise await refused_because(state, request_id, owner, "only a finished request can be retried")
    await send("retry", request_id, partial(enqueue_request, state.celery, request_id))
    return await current_status(state, request_id, owner)


@router.delete(
    "/api/v1/requests/{request_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(404, 409, 503),
    summary="Delete a finished request with its images",
)
async def delete_request(request_id: str, state: Annotated[AppState, Depends(services)], owner: Owner) -> Response:
    """Its stored images, documents and processing log are deleted; every route, and its /media
    URLs, then answer 404."""
    bind_contextvars(request_id=request_id)
    if await state.store.run(requests.ask_to_delete(request_id, owner, utcnow())) is None:
        raise await refused_because(state, request_id, owner, "cancel it, or let it finish, before deleting it")
    state.status_cache.forget(request_id)
    await send("deletion", request_id, partial(enqueue_delete, state.celery, request_id))
    give_up_at = time.monotonic() + DELETE_WAIT_SECONDS
    while await state.store.run(requests.exists(request_id)) and time.monotonic() < give_up_at:
        await asyncio.sleep(DELETE_LOOK_SECONDS)
    return Response(status_code=204)
