"""What a worker process holds: its clients, its image threads and its codec processes, made on first use.

Made after any fork: PyMongo clients and httpx connection pools must not cross one.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import redis
from celery.signals import worker_init, worker_shutdown
from pymongo import MongoClient

from shared.fair_queue import FairQueue
from shared.queue import IMAGES_QUEUE, redis_url
from shared.settings import Settings, get_settings
from shared.storage import Storage, storage_from_settings
from shared.store.clients import sync_client
from shared.store.operations import RawDocument, Runnable, SyncStore
from worker_service.codec_pool import CodecPool
from worker_service.downloader import Downloader
from worker_service.image_codec import fingerprint
from worker_service.lease_keeper import LeaseKeeper
from worker_service.step_cpu import CLOCK

T = TypeVar("T")


class TimedStore(SyncStore):
    """The worker's store: each operation, or program of them, counts as the `database` step."""

    def run(self, program: Runnable[T]) -> T:
        with CLOCK.timing("database"):
            return super().run(program)


@dataclass
class WorkerContext:
    settings: Settings

    @cached_property
    def mongo(self) -> MongoClient[RawDocument]:
        return sync_client(self.settings)

    @cached_property
    def store(self) -> SyncStore:
        return TimedStore(self.mongo[self.settings.service.mongodb_database])

    @cached_property
    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(redis_url(self.settings), socket_timeout=5, socket_connect_timeout=5)

    @cached_property
    def fair_queue(self) -> FairQueue:
        return FairQueue(self.redis, self.settings.work.products_queued_ahead)

    @cached_property
    def storage(self) -> Storage:
        return storage_from_settings(self.settings)

    @cached_property
    def downloader(self) -> Downloader:
        return Downloader(self.settings.download, self.settings.network)

    @cached_property
    def codec_pool(self) -> CodecPool:
        return CodecPool(self.settings.codec)

    @cached_property
    def lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(lambda: self.store, self.settings.work.product_lease_seconds)

    @cached_property
    def codec_fingerprint(self) -> str:
        """What an output remembered for a re-import must have been made with to be reused."""
        return fingerprint(self.settings.codec)

    @cached_property
    def image_threads(self) -> ThreadPoolExecutor:
        # Enough for every product the worker takes at once to have DOWNLOAD_CONCURRENCY images
        # under way, so no product waits for another's. An image holds its thread from its
        # download until it is stored: this also bounds the bodies held.
        return ThreadPoolExecutor(self.settings.images_at_once(), thread_name_prefix="image")


_context: WorkerContext | None = None
_context_pid: int | None = None


def worker_context() -> WorkerContext:
    global _context, _context_pid
    if _context is None or _context_pid != os.getpid():
        _context, _context_pid = WorkerContext(get_settings()), os.getpid()
    return _context


def consumes_images(worker: Any) -> bool:
    return IMAGES_QUEUE in worker.app.amqp.queues.consume_from


def prepare(sender: Any, **_: Any) -> None:
    """At a worker's start, before it takes a task: every worker runs its tasks in threads, and
    two threads making the same client at once would make two (`cached_property` does not lock
    on every Python this runs on), two sets of codec processes among them."""
    context = worker_context()
    for made_on_first_use in ("store", "redis", "fair_queue", "storage"):
        getattr(context, made_on_first_use)
    if consumes_images(sender):
        for made_on_first_use in ("downloader", "image_threads", "codec_pool", "codec_fingerprint", "lease_keeper"):
            getattr(context, made_on_first_use)


def stop_codec_processes(**_: Any) -> None:
    if _context is not None and "codec_pool" in vars(_context):
        _context.codec_pool.close()


def install() -> None:
    worker_init.connect(prepare, weak=False)
    worker_shutdown.connect(stop_codec_processes, weak=False)
