"""A product's images (or a batch's) in the worker's shared image threads, a few lanes at a time.

Each of at most DOWNLOAD_CONCURRENCY lanes takes the next image as it ends the last, so a product
of many images on a slow host, or a batch of many products, holds no more of the worker's image
threads than any other product, and a slow image holds up only its own lane. A lane per image
task rather than a task per image: handing each image to a thread and waiting for it cost about
0.1 ms of the worker's CPU an image, as much as a reused image's whole copy.
"""

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import wait
from typing import TypeVar

from structlog.contextvars import bind_contextvars

from worker_service.context import WorkerContext
from worker_service.image_work import ImageJob

T = TypeVar("T")
ImageWork = Callable[[WorkerContext, ImageJob, float], T]


def run_in_lanes(
    context: WorkerContext, work: ImageWork[T], jobs: list[ImageJob], not_after: float, give_up_at: float
) -> list[T | None]:
    """`work(context, job, not_after)` of each job, by the job's place; None for a job that had not
    ended by `give_up_at` (monotonic), when the lanes take no more."""
    results: list[T | None] = [None] * len(jobs)
    waiting = iter(enumerate(jobs))
    taking = threading.Lock()
    stopped = threading.Event()

    def next_job() -> tuple[int, ImageJob] | None:
        with taking:
            return None if stopped.is_set() else next(waiting, None)

    def lane() -> None:
        while (item := next_job()) is not None:
            place, job = item
            results[place] = in_own_context(job).run(work, context, job, not_after)

    # Executor threads do not inherit the task's context variables: each lane runs in a copy of them.
    lanes = [context.image_threads.submit(contextvars.copy_context().run, lane)
             for _ in range(min(context.settings.download.concurrency, len(jobs)))]  # fmt: skip
    wait(lanes, max(0.0, give_up_at - time.monotonic()))
    stopped.set()
    return list(results)


def in_own_context(job: ImageJob) -> contextvars.Context:
    """A copy of the lane's context variables (the request the task bound), with the image's product
    and position added to the copy only."""
    image_context = contextvars.copy_context()
    image_context.run(bind_contextvars, product=job.serial_number, image=job.position)
    return image_context
