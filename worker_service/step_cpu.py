"""What a worker's CPU goes to, by step of the work: `image_service_cpu_seconds_by_step_total{step}`.

Each step is timed in the thread that does it, by that thread's CPU clock (`time.thread_time`,
well under a microsecond a read), so a step's waits (for a host, the database, a free codec
process) cost it nothing. The seconds are added up in the process and handed to the metrics
after each task (`flush`), not once an image. The codec processes time their own work and send
it back with each image (`codec`). What no step counts — Celery's delivery and acknowledgement of
the tasks, the threads' hand-offs — is the process's CPU less the steps': `make bench` reports it.

The steps: `download` (the HTTP exchange and the address guard), `codec_handoff` (the body to a
codec process and the image back), `codec` (Pillow, in the codec process), `store` (the write or
copy to storage), `database` (every MongoDB operation), `logging` and `metrics`.
"""

import logging
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.signals import task_postrun

from shared import metrics


class StepClock:
    """The CPU seconds of each step since the last flush; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: defaultdict[str, float] = defaultdict(float)

    @contextmanager
    def timing(self, step: str) -> Iterator[None]:
        started = time.thread_time()
        try:
            yield
        finally:
            self.add(step, time.thread_time() - started)

    def add(self, step: str, seconds: float) -> None:
        with self._lock:
            self._seconds[step] += seconds

    def flush(self) -> None:
        """Hand the seconds to the metrics; what that costs is counted in the next flush."""
        started = time.thread_time()
        with self._lock:
            taken, self._seconds = self._seconds, defaultdict(float)
        for step, seconds in taken.items():
            metrics.CPU_BY_STEP.labels(step=step).inc(seconds)
        self.add("metrics", time.thread_time() - started)


# One for the process: each worker process counts its own, and the metrics add the processes up.
CLOCK = StepClock()


class TimedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The worker's log handler (standard error): formatting and writing a line count as `logging`."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def handle(self, record: logging.LogRecord) -> bool:
        with CLOCK.timing("logging"):
            return super().handle(record)


def flush_after_task(**_: Any) -> None:
    CLOCK.flush()


def install() -> None:
    task_postrun.connect(flush_after_task, weak=False)
