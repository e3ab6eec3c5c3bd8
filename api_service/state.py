"""The clients the routes share, created once per process."""

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Request
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from api_service.status_cache import StatusCache
from shared.settings import Settings
from shared.storage import Storage


@dataclass
class AppState:
    settings: Settings
    requests: AsyncCollection[dict[str, Any]]
    claims: AsyncCollection[dict[str, Any]]
    mongo: AsyncMongoClient[dict[str, Any]]
    redis: aioredis.Redis
    celery: Celery
    storage: Storage
    status_cache: StatusCache

    def status_url(self, request_id: str) -> str:
        return self.settings.api_url(f"status/{request_id}")

    def download_url(self, request_id: str) -> str:
        return self.settings.download_url(request_id)


def services(request: Request) -> AppState:
    # Starlette types app.state as Any; lifespan (api_service.main) stores an AppState there.
    state: AppState = request.app.state.services
    return state
