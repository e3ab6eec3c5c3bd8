"""The API application: clients and routes, wired once at start-up."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from fastapi import FastAPI
from pymongo.errors import PyMongoError

from api_service.errors import install_error_handlers
from api_service.routes import download, health, media, status, upload, webhook
from api_service.state import AppState
from api_service.status_cache import StatusCache
from shared.db import CLAIM_INDEXES, INDEXES, async_claims_collection, async_client, async_requests_collection
from shared.queue import make_celery
from shared.settings import Settings, get_settings
from shared.storage import storage_from_settings

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
            await state.requests.create_indexes(INDEXES)
            await state.claims.create_indexes(CLAIM_INDEXES)
            return
        except PyMongoError as error:
            log.warning("could not create indexes yet: %s", error)
            await asyncio.sleep(2)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    mongo = async_client(settings)
    redis_client = aioredis.Redis.from_url(settings.redis_url or "", socket_timeout=2, socket_connect_timeout=2)
    state = AppState(
        settings=settings,
        requests=async_requests_collection(mongo, settings),
        claims=async_claims_collection(mongo, settings),
        mongo=mongo,
        redis=redis_client,
        celery=make_celery(settings, "image-api"),
        storage=storage_from_settings(settings),
        status_cache=StatusCache(settings.status_cache_seconds, max_bytes=settings.status_cache_max_bytes),
    )
    app.state.services = state
    indexes = asyncio.create_task(create_indexes_when_ready(state))
    try:
        yield
    finally:
        indexes.cancel()
        await mongo.close()
        await redis_client.aclose()


def create_app(settings: Settings | None = None) -> FastAPI:
    app = FastAPI(title="Image processing service", version="1.0.0", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings or get_settings()
    install_error_handlers(app)
    for module in (upload, status, download, webhook, media, health):
        app.include_router(module.router)
    return app
