"""The task queue both services share: the Celery configuration and the task names.

The API only sends tasks by name, so it never imports the worker's code (Pillow,
httpx downloads); the worker registers the tasks under these same names.
"""

from celery import Celery

from shared.broker_transport import TRANSPORT
from shared.result_backend import BACKEND_CLASS
from shared.settings import VISIBILITY_TIMEOUT_SECONDS, Settings

# Image work runs in a worker of its own (its codec in processes of its own); the short
# bookkeeping tasks (starting and finishing a request, the sweeper) and webhook deliveries,
# which mostly wait on the network, run in separate workers, so they never queue behind
# thousands of images.
IMAGES_QUEUE = "images"
CONTROL_QUEUE = "control"
WEBHOOKS_QUEUE = "webhooks"

PROCESS_REQUEST = "control.process_request"
MERGE_RESULTS = "control.merge_results"
MERGE_IF_LAST = "control.merge_if_last"
SWEEP = "control.sweep"
CANCEL_REQUEST = "control.cancel_request"
FINISH_CANCEL = "control.finish_cancel"
DELETE_REQUEST = "control.delete_request"
PROCESS_PRODUCT = "images.process_product"
REVALIDATE_PRODUCTS = "images.revalidate_products"
DELIVER_WEBHOOK = "webhooks.deliver"

TASK_ROUTES = {
    "images.*": {"queue": IMAGES_QUEUE},
    "control.*": {"queue": CONTROL_QUEUE},
    "webhooks.*": {"queue": WEBHOOKS_QUEUE},
}

# A Redis that stops answering must not hold an upload: each command gives up after 2 s
# (above the consumer's 1 s BRPOP), and a publish is tried twice, so sending a task fails
# within about 6 s (measured: the publish, the reconnection's handshake, the publish again).
# The request is already stored by then, and the sweeper enqueues it once Redis answers.
REDIS_SOCKET_TIMEOUT_SECONDS = 2
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}


def redis_url(settings: Settings) -> str:
    if not settings.service.redis_url:
        raise RuntimeError("REDIS_URL is not set: start the service with `make run`, which sets it")
    return settings.service.redis_url


def make_celery(settings: Settings, name: str) -> Celery:
    url = redis_url(settings)
    # Results in Redis, through a backend that never subscribes to them (result_backend.py).
    app = Celery(name, broker=url, backend=f"{BACKEND_CLASS}+{url}")
    transport_options = {
        # A product task ends well within this (shared.settings.Deadlines); a message unacknowledged
        # for longer is given back to the queue by Redis. Lost work is found sooner by the sweeper.
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        "socket_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_SECONDS,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_routes=TASK_ROUTES,
        task_default_queue=IMAGES_QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # kombu's Redis transport, less a Redis client made anew for each command (broker_transport.py).
        broker_transport=TRANSPORT,
        broker_transport_options=transport_options,
        result_backend_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        result_expires=24 * 3600,
        timezone="UTC",
        enable_utc=True,
    )
    return app


# Nobody reads these tasks' results: ignoring them stores none, and keeps the sender from
# subscribing to each task's result channel (one more Redis command that could hang).
def enqueue_request(app: Celery, request_id: str) -> None:
    app.send_task(PROCESS_REQUEST, args=[request_id], queue=CONTROL_QUEUE, ignore_result=True)


def enqueue_cancel(app: Celery, request_id: str, owner: str | None, grace_seconds: float | None = None) -> None:
    """`grace_seconds`: how long the images under way may go on (None: the cancel's own grace)."""
    app.send_task(CANCEL_REQUEST, args=[request_id, owner, grace_seconds], queue=CONTROL_QUEUE, ignore_result=True)


def enqueue_delete(app: Celery, request_id: str) -> None:
    app.send_task(DELETE_REQUEST, args=[request_id], queue=CONTROL_QUEUE, ignore_result=True)


def enqueue_webhook(app: Celery, request_id: str, countdown: float = 0) -> None:
    app.send_task(DELIVER_WEBHOOK, args=[request_id], queue=WEBHOOKS_QUEUE, countdown=countdown, ignore_result=True)
