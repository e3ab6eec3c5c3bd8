"""GET /metrics: the metrics of every program of this host in Prometheus text format, and
the depth of the task queues, read from Redis at each scrape."""

import asyncio
import logging
from collections.abc import Iterable
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from api_service.state import AppState, services
from shared import metrics
from shared.queue import CONTROL_QUEUE, IMAGES_QUEUE, WEBHOOKS_QUEUE

router = APIRouter()
QUEUES = (IMAGES_QUEUE, CONTROL_QUEUE, WEBHOOKS_QUEUE)
log = logging.getLogger("api.metrics")


class QueueDepths(Collector):
    """Messages waiting in each queue (those held by a worker are not counted)."""

    def __init__(self, depths: dict[str, int]) -> None:
        self.depths = depths

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(f"{metrics.NAMESPACE}_queue_depth", self.__doc__ or "", labels=["queue"])
        for queue, depth in self.depths.items():
            gauge.add_metric([queue], depth)
        yield gauge


async def queue_depths(redis: aioredis.Redis) -> dict[str, int]:
    """Each queue's length; none while Redis does not answer, so that the rest is still scraped."""
    try:
        # Celery's Redis transport keeps a queue's messages in a list named after the queue.
        async with redis.pipeline(transaction=False) as pipeline:
            for queue in QUEUES:
                pipeline.llen(queue)
            lengths = await pipeline.execute()
    except RedisError as error:
        log.warning("queue depth unknown: %s", error)
        return {}
    return dict(zip(QUEUES, lengths, strict=True))


def exposition(depths: dict[str, int]) -> bytes:
    registry = CollectorRegistry()
    root = metrics.programs_root()
    # In multiprocess mode this process's own metrics are in its program's directory, with the others'.
    registry.register(metrics.ProgramsCollector(root) if root else REGISTRY)
    registry.register(QueueDepths(depths))
    return generate_latest(registry)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: Annotated[AppState, Depends(services)]) -> Response:
    depths = await queue_depths(state.redis)
    # Reading the programs' files is blocking work: off the event loop.
    body = await asyncio.to_thread(exposition, depths)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
