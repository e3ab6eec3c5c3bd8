"""POST /api/v1/webhook: set or replace a request's webhook."""

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends
from structlog.contextvars import bind_contextvars

from api_service.auth import Owner
from api_service.errors import ApiError
from api_service.schemas import WebhookRegistration, error_responses
from api_service.sending import send
from api_service.state import AppState, services
from api_service.validation import webhook_url_problem
from shared.models import utcnow
from shared.queue import enqueue_webhook
from shared.store import requests
from shared.url_rules import redact_credentials

router = APIRouter()


async def register_webhook(
    registration: WebhookRegistration, state: Annotated[AppState, Depends(services)], owner: Owner
) -> WebhookRegistration:
    """Replaces any earlier webhook; if the request is already finished, delivery starts now."""
    bind_contextvars(request_id=registration.request_id)
    url = registration.webhook_url.strip()
    if problem := webhook_url_problem(url, state.settings):
        raise ApiError(400, f"invalid webhook_url: {problem}")
    document = await state.store.run(requests.replace_webhook(registration.request_id, owner, url, utcnow()))
    if document is None:
        raise ApiError(404, "request not found")
    state.status_cache.forget(registration.request_id)
    if requests.status_of(document).is_final:
        await send("webhook", registration.request_id, partial(enqueue_webhook, state.celery, registration.request_id))
    return WebhookRegistration(request_id=registration.request_id, webhook_url=redact_credentials(url))


router.add_api_route(
    "/api/v1/webhook",
    register_webhook,
    methods=["POST"],
    response_model=WebhookRegistration,
    responses=error_responses(400, 404, 422, 503),
    summary="Set or replace a request's webhook",
    tags=["requests"],
)
router.add_api_route(
    "/api/webhook", register_webhook, methods=["POST"], response_model=WebhookRegistration, include_in_schema=False
)
