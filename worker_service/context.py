"""What a worker process holds: one set of clients per process, made after the fork.

PyMongo clients and httpx connection pools must not cross a fork, so each Celery
pool process builds its own on first use.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import redis
from pymongo import MongoClient
from pymongo.collection import Collection

from shared.db import claims_collection, requests_collection, sync_client
from shared.queue import redis_url
from shared.settings import Settings, get_settings
from shared.storage import Storage, storage_from_settings
from worker_service.downloader import Downloader, DownloadLimits
from worker_service.image_codec import CodecOptions


@dataclass
class WorkerContext:
    settings: Settings

    @cached_property
    def mongo(self) -> MongoClient[dict[str, Any]]:
        return sync_client(self.settings)

    @cached_property
    def requests(self) -> Collection[dict[str, Any]]:
        return requests_collection(self.mongo, self.settings)

    @cached_property
    def claims(self) -> Collection[dict[str, Any]]:
        return claims_collection(self.mongo, self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(redis_url(self.settings), socket_timeout=5, socket_connect_timeout=5)

    @cached_property
    def storage(self) -> Storage:
        return storage_from_settings(self.settings)

    @cached_property
    def downloader(self) -> Downloader:
        return Downloader(DownloadLimits.from_settings(self.settings))

    @cached_property
    def codec_options(self) -> CodecOptions:
        return CodecOptions.from_settings(self.settings)

    @cached_property
    def codec_slots(self) -> threading.Semaphore:
        # Downloads overlap freely; decoding is bounded, since a decoded 12 MP photo alone
        # takes 36 MB and the process already has a core's worth of work with one.
        return threading.Semaphore(self.settings.codec_concurrency)

    @cached_property
    def image_threads(self) -> ThreadPoolExecutor:
        # A product's images are fetched concurrently, so a slow image host does not idle the core.
        return ThreadPoolExecutor(self.settings.download_concurrency, thread_name_prefix="image")


_context: WorkerContext | None = None
_context_pid: int | None = None


def worker_context() -> WorkerContext:
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        _context, _context_pid = WorkerContext(get_settings()), os.getpid()
    return _context
