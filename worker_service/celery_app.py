"""The worker's Celery application, its periodic sweep and how its programs log."""

from celery import signals

from shared.queue import SWEEP, make_celery
from shared.settings import get_settings
from worker_service import task_logging

settings = get_settings()
app = make_celery(settings, "image-worker")
app.conf.include = ["worker_service.tasks"]
app.conf.beat_schedule = {
    "sweep": {"task": SWEEP, "schedule": settings.work.sweep_interval_seconds},
}
# The service's log format, each task's request on every line it logs (see task_logging).
signals.setup_logging.connect(task_logging.use_service_logging)
signals.celeryd_init.connect(task_logging.prepare_worker_logging)
signals.task_prerun.connect(task_logging.bind_task_context)
signals.task_postrun.connect(task_logging.clear_task_context)
