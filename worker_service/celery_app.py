"""The worker's Celery application and its periodic sweep."""

import logging

from shared.queue import SWEEP, make_celery
from shared.settings import get_settings

settings = get_settings()
app = make_celery(settings, "image-worker")
app.conf.include = ["worker_service.tasks"]
app.conf.beat_schedule = {
    "sweep": {"task": SWEEP, "schedule": settings.sweep_interval_seconds},
}
# httpx logs every request's URL at INFO, credentials included; the worker logs what it needs itself.
logging.getLogger("httpx").setLevel(logging.WARNING)
