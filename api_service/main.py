"""The API application: clients and routes, wired once at start-up."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import Depends, FastAPI
from prometheus_fastapi_instrumentator import Instrumentator
from pymongo.errors import PyMongoError

from api_service.auth import ApiKeys
from api_service.cors import install_cors
from api_service.docs import install_docs
from api_service.errors import install_error_handlers
from api_service.http_request_ids import FastAPIWithHttpRequestIds
from api_service.rate_limits import RateLimits, limit_requests
from api_service.routes import download, health, images, media, metrics, requests, status, upload, webhook
from api_service.schemas import error_responses
from api_service.state import AppState
from api_service.status_cache import StatusCache
from api_service.storage_probe import StorageProbe
from api_service.web import install_web_page
from shared import metrics as service_metrics
from shared import request_events, store
from shared.fair_queue import FairQueueView
from shared.logging import configure_logging
from shared.queue import make_celery, redis_url
from shared.settings import Settings, get_settings
from shared.storage import storage_from_settings
from shared.store.clients import async_client, async_store

log = logging.getLogger("api")

DESCRIPTION = """
Upload a CSV of products and their image URLs; every image is downloaded, compressed
and stored in the background. Poll the status, download the output CSV, or register a
webhook to be told when the request is finished.
"""


async def create_indexes_when_ready(state: AppState) -> None:
    # The embedded MongoDB may still be starting when the API comes up: keep trying
    # in the background rather than failing start-up (readiness reports it meanwhile).
    while True:
        try:
            await state.store.run(store.ensure_indexes())
            return
        except PyMongoError as error:
            log.warning("could not create indexes yet: %s", error)
            await asyncio.sleep(2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    mongo = async_client(settings)
    storage = storage_from_settings(settings)
    redis_client = aioredis.Redis.from_url(redis_url(settings), socket_timeout=2, socket_connect_timeout=2)
    state = AppState(
        settings=settings,
        store=async_store(mongo, settings),
        mongo=mongo,
        redis=redis_client,
        celery=make_celery(settings, "image-api"),
        storage=storage,
        storage_probe=StorageProbe(storage, redis_client),
        status_cache=StatusCache(settings.api.status_cache_seconds, max_bytes=settings.api.status_cache_max_bytes),
        fair_queue=FairQueueView(redis_client),
    )
    app.state.services = state
    indexes = asyncio.create_task(create_indexes_when_ready(state))
    news_client = request_events.listening_client(redis_url(settings))
    news = asyncio.create_task(request_events.listen_for_finished(news_client, state.status_cache.forget))
    try:
        yield
    finally:
        indexes.cancel()
        news.cancel()
        await asyncio.gather(indexes, news, return_exceptions=True)
        await app.state.rate_limits.close()
        await mongo.close()
        await redis_client.aclose()
        await news_client.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPIWithHttpRequestIds(
        title="Image processing service",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served by install_docs instead, with their scripts and styles from this service, not a CDN.
        docs_url=None,
        redoc_url=None,
        # Each operation is named after its function (upload_csv, request_status, ...): the names
        # the schema's links, and clients generated from it, use.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings or get_settings()
    configure_logging(app.state.settings.operations.log_format)
    install_error_handlers(app)
    app.state.api_keys = ApiKeys(app.state.settings.api.key_list)
    app.state.rate_limits = RateLimits(app.state.settings.api, app.state.settings.service.redis_url)
    # Every API route, the design documents' aliases (/upload, /status/{id}, ...) too: a key
    # when API_KEYS is set (api_service.auth), then the request rate limit (api_service.rate_limits).
    # (limit_requests depends on caller_owner, which FastAPI runs once per request.)
    api_guard = [Depends(limit_requests)]
    for module in (upload, status, images, download, webhook, requests):
        app.include_router(module.router, dependencies=api_guard, responses=error_responses(401, 429))
    # Open: media, health, /metrics, the docs, the schema and the web page at /.
    for module in (media, health, metrics):
        app.include_router(module.router)
    install_docs(app)
    install_web_page(app)
    service_metrics.forget_earlier_runs()
    # HTTP requests by route template, exact status and duration; the scrapes themselves not counted.
    Instrumentator(should_group_status_codes=False, excluded_handlers=["/metrics"]).instrument(app)
    install_cors(app, app.state.settings.api.cors_origin_list)
    return app
