"""The clients the routes share, created once per process."""

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery
from fastapi import Request
from pymongo import AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection

from api_service.status_cache import StatusCache
from shared.settings import Settings
from shared.storage import LocalStorage


@dataclass
class AppState:
    settings: Settings
    requests: AsyncCollection
    claims: AsyncCollection
    mongo: AsyncMongoClient
    redis: aioredis.Redis
    celery: Celery
    storage: LocalStorage
    status_cache: StatusCache

    def api_url(self, path: str) -> str:
        return f"{self.settings.base_url}/api/v1/{path}"

    def status_url(self, request_id: str) -> str:
        return self.api_url(f"status/{request_id}")

    def download_url(self, request_id: str) -> str:
        return self.api_url(f"download/{request_id}")


def services(request: Request) -> AppState:
    return request.app.state.services
