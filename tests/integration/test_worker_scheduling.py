"""On an image worker's core its codec processes go first: the worker's own threads run under
SCHED_BATCH, its codec processes as any other process (worker_service/cpu_scheduling.py)."""

import os

import psutil
import pytest

from tests.support.client import accepted_id, product_csv, wait_final

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")


def policies(process: psutil.Process) -> set[int]:
    return {os.sched_getscheduler(thread.id) for thread in process.threads()}


def test_the_image_workers_threads_wait_their_turn_and_its_codec_processes_do_not(stack, image_server):
    # An image of each kind of work first, so that every thread the worker starts on demand has started.
    catalogue = product_csv([(1, "A", [image_server.image("photo.jpg"), image_server.image("photo.png")])])
    assert wait_final(stack.api, accepted_id(stack.api, catalogue))["status"] == "completed"

    worker = psutil.Process(stack.pid_of("worker"))
    codecs = [child for child in worker.children() if "spawn_main" in " ".join(child.cmdline())]

    assert policies(worker) == {os.SCHED_BATCH}
    assert codecs
    assert [policies(codec) for codec in codecs] == [{os.SCHED_OTHER}] * len(codecs)
    assert policies(psutil.Process(stack.pid_of("control"))) == {os.SCHED_OTHER}
