"""The clients the routes share, created once per process."""

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Request
from pymongo import AsyncMongoClient

from api_service.status_cache import StatusCache
from api_service.storage_probe import StorageProbe
from shared.fair_queue import FairQueueView
from shared.settings import Settings
from shared.storage import Storage
from shared.store.operations import AsyncStore, RawDocument


@dataclass
class AppState:
    settings: Settings
    store: AsyncStore
    mongo: AsyncMongoClient[RawDocument]
    redis: aioredis.Redis
    celery: Celery
    storage: Storage
    status_cache: StatusCache
    fair_queue: FairQueueView
    storage_probe: StorageProbe

    def status_url(self, request_id: str) -> str:
        return self.settings.api_url(f"status/{request_id}")

    def download_url(self, request_id: str) -> str:
        return self.settings.download_url(request_id)


async def services(request: Request) -> AppState:
    # Async though it awaits nothing: FastAPI runs a plain function dependency in its thread pool,
    # a hand-off to a thread on every request (7-10 % of the API's CPU under 50 pollers).
    # Starlette types app.state as Any; lifespan (api_service.main) stores an AppState there.
    state: AppState = request.app.state.services
    return state
