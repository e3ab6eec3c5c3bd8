"""The worker's CPU by step: a step's own CPU is counted, not its waits, and reaches the metrics once a flush."""

import time

from shared import metrics
from worker_service.step_cpu import StepClock


def counted(step: str) -> float:
    return metrics.CPU_BY_STEP.labels(step=step)._value.get()


def spin(seconds: float) -> None:
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_a_step_counts_its_cpu_and_not_its_waits() -> None:
    clock = StepClock()
    before = counted("download")
    with clock.timing("download"):
        time.sleep(0.2)
        spin(0.05)
    assert counted("download") == before, "counted before the flush"
    clock.flush()
    added = counted("download") - before
    assert 0.05 <= added < 0.15
    metrics_before = counted("metrics")
    clock.flush()  # what the first flush cost is counted by the next
    assert counted("metrics") > metrics_before


def test_seconds_added_from_elsewhere_are_flushed_once() -> None:
    clock = StepClock()
    before = counted("codec")
    clock.add("codec", 0.25)
    clock.add("codec", 0.25)
    clock.flush()
    clock.flush()
    assert counted("codec") - before == 0.5
