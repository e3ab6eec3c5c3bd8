"""GET /metrics: the metrics of every program of this host in Prometheus text format, and the
depth of the task queues and the products waiting for their turn, read from Redis at each scrape."""

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

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


# An owner is named in the metrics by the start of its key's digest: enough to tell keys apart.
OWNER_LABEL_CHARS = 12


@dataclass(frozen=True)
class Waiting:
    """What Redis says waits: messages in each queue, and products waiting for their turn by owner."""

    queues: dict[str, int]
    products_by_owner: dict[str, int]


class WaitingWork(Collector):
    def __init__(self, waiting: Waiting) -> None:
        self.waiting = waiting

    def collect(self) -> Iterable[Metric]:
        queues = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_queue_depth",
            "Messages waiting in each queue (those held by a worker are not counted)",
            labels=["queue"],
        )
        for queue, depth in self.waiting.queues.items():
            queues.add_metric([queue], depth)
        yield queues
        products = GaugeMetricFamily(
            f"{metrics.NAMESPACE}_products_waiting",
            "Products waiting for their turn to go to the image workers, by owner (its key's digest, shortened)",
            labels=["owner"],
        )
        for owner, count in self.waiting.products_by_owner.items():
            products.add_metric([owner[:OWNER_LABEL_CHARS]], count)
        yield products


async def waiting_work(state: AppState) -> Waiting:
    """Each queue's length and the products waiting by owner; none while Redis does not answer,
    so that the rest is still scraped."""
    try:
        # Celery's Redis transport keeps a queue's messages in a list named after the queue.
        async with state.redis.pipeline(transaction=False) as pipeline:
            for queue in QUEUES:
                pipeline.llen(queue)
            lengths = await pipeline.execute()
        by_owner = await state.fair_queue.waiting_by_owner()
    except RedisError as error:
        log.warning("queue depth unknown: %s", error)
        return Waiting({}, {})
    return Waiting(dict(zip(QUEUES, lengths, strict=True)), by_owner)


def exposition(waiting: Waiting) -> bytes:
    registry = CollectorRegistry()
    root = metrics.programs_root()
    # In multiprocess mode this process's own metrics are in its program's directory, with the others'.
    registry.register(metrics.ProgramsCollector(root) if root else REGISTRY)
    registry.register(WaitingWork(waiting))
    return generate_latest(registry)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(state: Annotated[AppState, Depends(services)]) -> Response:
    waiting = await waiting_work(state)
    # Reading the programs' files is blocking work: off the event loop.
    body = await asyncio.to_thread(exposition, waiting)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
