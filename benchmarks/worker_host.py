"""A worker host alone on its cores, as one machine of a fleet: how close `make worker` comes to
Pillow on the same cores, and what its CPU goes to (issue 20).

The API host (`make run` with WORKER_CONCURRENCY=0: the API, MongoDB, Redis, the control and
webhook workers, beat), SeaweedFS and the benchmark's image host run on the other cores; the
worker host (`make worker`, one codec process per core of its own, images stored in the bucket)
on its cores only. After a small request to warm it up (as Pillow's processes are warmed up before
they are timed), its rate is compared with Pillow alone on those same cores. Its CPU per image
is split by step: the main process's steps from its metrics
(`image_service_cpu_seconds_by_step_total`, worker_service/step_cpu.py), Celery and the rest as
that process's CPU less its steps', and the codec processes' own CPU.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from benchmarks import ceiling
from benchmarks.corpus import CorpusImage
from benchmarks.image_host import ImageHost
from benchmarks.service import Final, product_csv, upload, wait_final
from local_stack.processes import free_port
from local_stack.running import RunningHost, running_stack, running_worker_host
from local_stack.seaweedfs import seaweedfs_process

MAIN_STEPS = ("download", "codec_handoff", "store", "database", "logging", "metrics")
WARM_UP_PRODUCTS = 20
STEP_LINE = re.compile(r'^image_service_cpu_seconds_by_step_total\{step="(\w+)"\} ([0-9.e+-]+)$', re.MULTILINE)


def split_cores() -> tuple[set[int], set[int]]:
    """The worker host's cores (the last half, at least one) and the others'."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("the worker-host run needs two cores or more: one for the worker host, one for the rest")
    mine = set(cores[len(cores) // 2 :])
    return mine, set(cores) - mine


@contextmanager
def pinned(cores: set[int]) -> Iterator[None]:
    """This process, and every process it starts meanwhile, on `cores` only."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def busy(cores: set[int]) -> Iterator[None]:
    """A process spinning on each of `cores` meanwhile.

    What the other cores' work does to the worker's: on a VM, two vCPUs may be the two threads of
    one physical core, and then Pillow on one runs slower while the other is busy (on this
    project's 2-vCPU machines, about 20 % slower beside a spinning loop).
    """
    spinners = []
    for core in sorted(cores):
        with pinned({core}):
            spinners.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def busy_share(before: list, after: list, cores: set[int]) -> float:
    """How busy `cores` were between two `psutil.cpu_times(percpu=True)`, from 0 to 1 each, averaged."""
    shares = []
    for core in cores:
        spent = {field: getattr(after[core], field) - getattr(before[core], field) for field in after[core]._fields}
        total = sum(spent.values())
        shares.append(1 - (spent["idle"] + spent.get("iowait", 0.0)) / total if total else 0.0)
    return sum(shares) / len(shares)


def steps_seconds(metrics_url: str) -> dict[str, float]:
    """The worker host's CPU seconds by step so far, from its metrics."""
    text = httpx.get(metrics_url, timeout=10).text
    return {step: float(value) for step, value in STEP_LINE.findall(text)}


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def worker_processes(host: RunningHost) -> tuple[psutil.Process, list[psutil.Process]]:
    """The image worker's main process and its codec processes."""
    main = psutil.Process(host.pid_of("worker"))
    return main, main.children(recursive=True)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


def per_image_ms(seconds: float, images: int) -> float:
    return 1000 * seconds / images


@dataclass
class Fleet:
    """An API host, its servers and an image host on some cores; a worker host on its own."""

    api: str
    worker_host: RunningHost
    image_host: ImageHost
    metrics_url: str


@contextmanager
def fleet(
    corpus: list[CorpusImage], environment: dict[str, str], worker_cores: set[int], other_cores: set[int]
) -> Iterator[Fleet]:
    metrics_port = free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with ExitStack() as started:
        root = Path(started.enter_context(tempfile.TemporaryDirectory(prefix="bench-worker-host-")))
        started.enter_context(pinned(other_cores))
        weed = started.enter_context(seaweedfs_process(root / "s3"))
        shared = {**environment, **weed.server.environment(), "S3_PREFIX": "bench/"}
        stack = started.enter_context(running_stack(root / "api-host", {**shared, "WORKER_CONCURRENCY": "0"}))
        image_host = started.enter_context(ImageHost(corpus))
        worker_environment = {
            **shared,
            **{name: stack.environment()[name] for name in ("MONGODB_URL", "REDIS_URL")},
            "CODEC_CONCURRENCY": str(len(worker_cores)),
            "WORKER_METRICS_PORT": str(metrics_port),
        }
        # Ready once its metrics answer: they are served when the worker has started.
        worker_host = started.enter_context(
            running_worker_host(root / "worker-host", worker_environment, lambda: answers(metrics_url), worker_cores)
        )
        yield Fleet(stack.api, worker_host, image_host, metrics_url)


def measure_worker_host(corpus: list[CorpusImage], environment: dict[str, str], images: int, per_product: int) -> dict:
    worker_cores, other_cores = split_cores()
    # Pillow over as many images as the worker, half before its run and half after: this machine's
    # speed moves by a tenth from one few seconds to the next, so the reference is averaged as long.
    cycle = [image.data for image in corpus] * -(-max(images // 2, 200) // len(corpus))
    print(f"worker host: Pillow alone on cores {sorted(worker_cores)}…", flush=True)
    before = alone_on(worker_cores, cycle)
    with busy(other_cores):
        pillow_beside_busy = ceiling.images_per_second(cycle, ceiling.plain_pillow, len(worker_cores), worker_cores)
    with fleet(corpus, environment, worker_cores, other_cores) as running:
        first_request_seconds = warm_up(running, per_product)
        print(f"worker host: {images} images on cores {sorted(worker_cores)}…", flush=True)
        result = run_on_host(running, images, per_product, other_cores)
    after = alone_on(worker_cores, cycle)
    # And it drifts within minutes: the worker is held against Pillow's mean rate from just before
    # and just after it, and both are kept.
    pillow, codec = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
    rate = result["images_per_second"]
    return {
        **result,
        "worker_cores": sorted(worker_cores),
        "pillow_images_per_second": pillow,
        "pillow_images_per_second_before_after": [before[0], after[0]],
        "codec_images_per_second": codec,
        "pillow_beside_busy_images_per_second": pillow_beside_busy,
        "ratio_to_pillow": rate / pillow,
        "ratio_to_codec": rate / codec,
        "ratio_to_pillow_beside_busy": rate / pillow_beside_busy,
        "pillow_ms_per_image": 1000 * len(worker_cores) / pillow,
        "first_request": {"images": WARM_UP_PRODUCTS * per_product, "seconds": first_request_seconds},
    }


def alone_on(cores: set[int], cycle: list[bytes]) -> tuple[float, float]:
    """Images a second of Pillow alone, and of the service's codec alone, on `cores`."""
    pillow = ceiling.images_per_second(cycle, ceiling.plain_pillow, len(cores), cores)
    return pillow, ceiling.images_per_second(cycle, ceiling.service_codec, len(cores), cores)


def warm_up(running: Fleet, per_product: int) -> float:
    """A small request first, as Pillow's processes are warmed up before they are timed: a host of a
    fleet has long made its connections and loaded what it loads on its first task. Its seconds,
    from the upload, as soon as the host is up, to its final status: what a start costs."""
    started = time.perf_counter()
    one_request(running, "worker-host-warm-up", WARM_UP_PRODUCTS, per_product)
    return time.perf_counter() - started


def one_request(running: Fleet, run: str, products: int, per_product: int) -> Final:
    """A catalogue of new images uploaded to the fleet's API, and its first final status."""
    catalogue = product_csv(running.image_host, f"{run}-{time.time()}", products, per_product)
    request_id, _ = upload(running.api, catalogue)
    return wait_final(running.api, request_id, Path("/nonexistent"), products * per_product)


def run_on_host(running: Fleet, images: int, per_product: int, other_cores: set[int]) -> dict:
    metrics_url = running.metrics_url
    main, codecs = worker_processes(running.worker_host)
    products = images // per_product
    steps_before, main_before, codecs_before = steps_seconds(metrics_url), cpu_seconds([main]), cpu_seconds(codecs)
    cores_before = psutil.cpu_times(percpu=True)
    started = time.perf_counter()
    final = one_request(running, "worker-host", products, per_product)
    wall = time.perf_counter() - started
    other_cores_busy = busy_share(cores_before, psutil.cpu_times(percpu=True), other_cores)
    # What the last task's flush put there, after its acknowledgement: a moment for the last one.
    time.sleep(1.0)
    steps = {step: seconds - steps_before.get(step, 0.0) for step, seconds in steps_seconds(metrics_url).items()}
    done = products * per_product
    main_seconds = cpu_seconds([main]) - main_before
    in_steps = sum(steps.get(step, 0.0) for step in MAIN_STEPS)
    cpu_ms = {step: per_image_ms(steps.get(step, 0.0), done) for step in MAIN_STEPS}
    cpu_ms["celery_and_rest"] = per_image_ms(main_seconds - in_steps, done)
    cpu_ms["codec"] = per_image_ms(steps.get("codec", 0.0), done)
    cpu_ms["codec_processes"] = per_image_ms(cpu_seconds(codecs) - codecs_before, done)
    return {
        "images": done,
        "status": final.status["status"],
        "images_failed": final.status["progress"]["images_failed"],
        "seconds": wall,
        "images_per_second": done / wall,
        "cpu_ms_per_image": cpu_ms,
        "main_process_ms_per_image": per_image_ms(main_seconds, done),
        "other_cores_busy": other_cores_busy,
    }
