"""How the Celery programs log: through the service's configuration (shared/logging.py), every
line a task logs saying what it works on — the request, and the product where there is one.

The functions are Celery signal receivers, connected in worker_service/celery_app.py.
"""

from collections.abc import Sequence
from typing import Any

from celery import Task
from structlog.contextvars import bind_contextvars, clear_contextvars

from shared.logging import configure_logging
from shared.queue import DELIVER_WEBHOOK, MERGE_RESULTS, PROCESS_PRODUCT, PROCESS_REQUEST, REVALIDATE_PRODUCTS
from shared.settings import get_settings
from worker_service.step_cpu import TimedStreamHandler

# The tasks whose first argument is a request id.
REQUEST_TASKS = frozenset({PROCESS_REQUEST, MERGE_RESULTS, DELIVER_WEBHOOK})


def use_service_logging(loglevel: int, **_: object) -> None:
    """setup_logging: with a receiver connected, Celery configures nothing itself, and its own
    lines (task received, succeeded, failed) go through the service's formatter."""
    configure_logging(get_settings().operations.log_format, loglevel, TimedStreamHandler())


def prepare_worker_logging(instance: Any, **_: object) -> None:
    """celeryd_init, the first thing a starting worker does: the service's format from here on,
    so that its start-up warnings (running as root...) come out in it too, before setup_logging.

    And no banner with JSON: it is a drawing printed to stdout, not log lines, the only lines
    of a JSON log that would not parse."""
    log_format = get_settings().operations.log_format
    configure_logging(log_format, handler=TimedStreamHandler())
    if log_format == "json":
        instance.quiet = True


def task_context(task_name: str, args: Sequence[Any]) -> dict[str, Any]:
    """What the task `task_name` called with `args` works on."""
    if task_name == PROCESS_PRODUCT:
        work = args[0]
        return {"request_id": work["request_id"], "product": work["serial_number"]}
    if task_name == REVALIDATE_PRODUCTS:
        return {"request_id": args[0][0]["request_id"]}
    if task_name in REQUEST_TASKS:
        return {"request_id": args[0]}
    return {}


def bind_task_context(task: Task[Any, Any], args: Sequence[Any], **_: object) -> None:
    """task_prerun: bound before the task runs, so Celery's line about how it ended carries it too."""
    # Cleared first too: a task that ends in a retry gets no task_postrun, and the same process
    # or thread runs the next task.
    clear_contextvars()
    bind_contextvars(**task_context(task.name, args))


def clear_task_context(**_: object) -> None:
    """task_postrun."""
    clear_contextvars()
