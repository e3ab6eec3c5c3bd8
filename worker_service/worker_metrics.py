"""The Celery side of the metrics: each worker program's own directory, and the image worker's port.

A worker's pool children record into files of their own (shared/metrics.py); the main
process starts the program's directory afresh, and on a host without an API (`make
worker`), when WORKER_METRICS_PORT is set, the image worker's main process serves the
metrics of every program of its host there.
"""

import logging
from typing import Any

from celery.signals import worker_init, worker_process_shutdown
from prometheus_client import start_http_server
from prometheus_client.multiprocess import mark_process_dead

from shared import metrics
from shared.queue import IMAGES_QUEUE
from shared.settings import get_settings

log = logging.getLogger("worker.metrics")


def consumes_images(worker: Any) -> bool:
    return IMAGES_QUEUE in worker.app.amqp.queues.consume_from


def on_worker_init(sender: Any, **_: Any) -> None:
    """In the worker's main process, before the pool forks."""
    metrics.forget_earlier_runs()
    port = get_settings().worker_metrics_port
    root = metrics.programs_root()
    if port is None or not consumes_images(sender):
        return
    if root is None:
        log.error("WORKER_METRICS_PORT is set but PROMETHEUS_MULTIPROC_DIR is not: the pool's metrics cannot be served")
        return
    try:
        start_http_server(port, registry=metrics.programs_registry(root))
    except OSError:
        # Images matter more than their metrics: the worker goes on without them.
        log.exception("could not serve metrics on WORKER_METRICS_PORT=%d", port)
        return
    log.info("serving metrics on port %d", port)


def on_process_shutdown(pid: int, **_: Any) -> None:
    # Only a "live" gauge's file goes: counters of an exited child still count.
    if metrics.MULTIPROCESS_DIRECTORY:
        mark_process_dead(pid)  # type: ignore[no-untyped-call]  # untyped in prometheus_client


def install() -> None:
    worker_init.connect(on_worker_init, weak=False)
    worker_process_shutdown.connect(on_process_shutdown, weak=False)
