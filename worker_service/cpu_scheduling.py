"""On an image worker's cores, its codec processes go first (WORKER_BATCH_SCHEDULING).

A codec process decodes and encodes an image in one stretch of CPU. The worker's own threads
(downloads, storage, Celery, the database) run in short turns between network waits, and Linux
lets a thread that wakes interrupt the one running: a codec process was interrupted three or four
times an image, and came back each time to caches the other had filled. Under Linux's SCHED_BATCH
the worker's threads keep their share of the core but take it when the running process's turn
ends, not the moment they wake (sched(7)); the codec processes stay as any other process.

Measured on a worker host alone on one core (docs/performance.md): a codec process interrupted
1.6 times an image rather than 3.6, and about 2 % more images a second.
"""

import contextlib
import logging
import os

log = logging.getLogger("worker.scheduling")


def worker_threads_wait_their_turn() -> None:
    """Every thread of this process under SCHED_BATCH, and so every thread and process they start."""
    _every_thread_under("SCHED_BATCH", "the worker's threads run as any other")


def codec_process_takes_its_turn() -> None:
    """Every thread of this process (numpy's among them) back under the ordinary policy: it was
    started by a thread under SCHED_BATCH."""
    _every_thread_under("SCHED_OTHER", "it waits its turn as the worker's threads do")


def _every_thread_under(policy_name: str, otherwise: str) -> None:
    if not hasattr(os, "SCHED_BATCH"):  # a Linux policy
        return
    policy = getattr(os, policy_name)
    try:
        for thread_id in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
                os.sched_setscheduler(int(thread_id), policy, os.sched_param(0))
    except OSError:
        log.warning("could not change this process's scheduling policy: %s", otherwise, exc_info=True)
