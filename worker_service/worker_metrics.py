"""The Celery side of the metrics: each worker program's own directory, and the image worker's port.

Each worker program records into files of its own (shared/metrics.py); its main process
starts the program's directory afresh, and on a host without an API (`make
worker`), when WORKER_METRICS_PORT is set, the image worker's main process serves the
metrics of every program of its host there.
"""

import logging
from typing import Any

from celery.signals import worker_init
from prometheus_client import start_http_server

from shared import metrics
from shared.settings import get_settings
from worker_service.context import consumes_images

log = logging.getLogger("worker.metrics")


def on_worker_init(sender: Any, **_: Any) -> None:
    """In the worker's process, before it takes a task."""
    metrics.forget_earlier_runs()
    port = get_settings().operations.worker_metrics_port
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


def install() -> None:
    worker_init.connect(on_worker_init, weak=False)
