"""The codec processes: the same answers as the codec in process, shared by threads; only the image fails
when one is too slow or dies at work, one found dead is replaced first, and a thread that cannot get
one in time, or asks a closed pool, is told so."""

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from shared.settings import CodecSettings
from worker_service import codec_pool
from worker_service.codec_pool import CodecBusy, CodecFailed, CodecPool, CodecTimeout
from worker_service.image_codec import ImageRejected, compress

OPTIONS = CodecSettings(_env_file=None)


def encoded(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encoded(Image.radial_gradient("L").resize((640, 480)).convert("RGB"), "JPEG")


@pytest.fixture(scope="module")
def slow_image() -> bytes:
    """A noisy 12 MP PNG: a few hundred milliseconds to decode and encode again, losslessly."""
    return encoded(Image.effect_noise((4000, 3000), 64).convert("RGB"), "PNG")


@pytest.fixture
def pool() -> Iterator[CodecPool]:
    codec = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 30}))
    yield codec
    codec.close()


@pytest.fixture
def impatient_pool(photo) -> Iterator[CodecPool]:
    """A pool whose one process, started and warmed up, is killed after 0.1 s on an image."""
    codec = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 0.1}))
    compressed_by(codec, photo)
    yield codec
    codec.close()


def compressed_by(pool: CodecPool, data: bytes) -> bytes:
    with pool.process() as codec:
        return codec.compress(data).data


def test_an_image_comes_back_as_the_codec_makes_it_in_process(pool, photo):
    with pool.process() as codec:
        image = codec.compress(photo)
    assert image == compress(photo, OPTIONS)
    assert pool.pids()[0] != os.getpid()


def test_bodies_and_images_too_large_to_share_cross_the_pipe(photo, monkeypatch):
    monkeypatch.setattr(codec_pool, "SHARED_BYTES", 1000)  # smaller than the photo and its image
    assert len(photo) > 1000 and len(compress(photo, OPTIONS).data) > 1000
    small = encoded(Image.new("RGB", (8, 8), "red"), "JPEG")
    assert len(small) < 1000
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 30}))
    try:
        for _ in range(2):  # and the shared memory is still right after them
            with pool.process() as codec:
                assert codec.compress(photo) == compress(photo, OPTIONS)
            with pool.process() as codec:
                assert codec.compress(small) == compress(small, OPTIONS)  # fits: through the shared memory
    finally:
        pool.close()


def test_a_refused_body_is_refused_with_the_codecs_message(pool):
    with pytest.raises(ImageRejected) as refused, pool.process() as codec:
        codec.compress(b"GIF89a and nothing after it")
    with pytest.raises(ImageRejected) as in_process:
        compress(b"GIF89a and nothing after it", OPTIONS)
    assert refused.value.message == in_process.value.message
    assert type(refused.value) is ImageRejected  # the message is what travels: the subclass is the codec's


def test_a_process_over_the_time_limit_is_killed_and_replaced(impatient_pool, photo, slow_image):
    pool = impatient_pool
    (before,) = pool.pids()
    started = time.monotonic()
    with pytest.raises(CodecTimeout) as timed_out, pool.process() as codec:
        codec.compress(slow_image)
    assert time.monotonic() - started < 0.1 + 1  # the limit, and the time to kill it
    assert timed_out.value.message == "image took longer than 0.1 s to decode and encode"
    wait_for(lambda: not alive(before))  # killed at once, not at the next lease
    assert compressed_by(pool, photo) == compress(photo, OPTIONS).data
    (after,) = pool.pids()
    assert after != before


def test_a_process_that_dies_at_work_fails_only_that_image(slow_image, photo):
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 30}))
    try:
        compressed_by(pool, photo)  # started: the kill below comes while it works on the image
        (worker,) = pool.pids()
        assert worker is not None
        threading.Timer(0.1, os.kill, (worker, signal.SIGKILL)).start()
        with pytest.raises(CodecFailed), pool.process() as codec:
            codec.compress(slow_image)
        assert compressed_by(pool, photo) == compress(photo, OPTIONS).data
        assert pool.pids() != [worker]
    finally:
        pool.close()


def test_a_process_found_dead_is_replaced_before_the_image_reaches_it(pool, photo):
    (worker,) = pool.pids()
    assert worker is not None
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: not alive(worker))
    assert compressed_by(pool, photo) == compress(photo, OPTIONS).data
    assert pool.pids() != [worker]


def test_a_thread_that_cannot_get_a_process_in_time_is_told_so(pool):
    with pool.process():
        started = time.monotonic()
        with pytest.raises(CodecBusy), pool.process(not_after=time.monotonic() + 0.2):
            pass
        assert 0.2 <= time.monotonic() - started < 1


def test_closing_ends_every_process(photo):
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 2, "timeout_seconds": 10}))
    compressed_by(pool, photo)
    pids = pool.pids()
    pool.close()
    for pid in pids:
        assert pid is not None and not alive(pid)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped) still answers signal 0; the pool reaps what it replaces.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_closed_pool_gives_out_no_process(photo):
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 10}))
    pool.close()
    with pytest.raises(CodecFailed), pool.process():
        pass


def test_threads_share_the_processes(photo):
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 2, "timeout_seconds": 30}))
    try:
        with ThreadPoolExecutor(8) as threads:
            results = list(threads.map(lambda _: compressed_by(pool, photo), range(32)))
        assert results == [compress(photo, OPTIONS).data] * 32
        assert len(pool.pids()) == 2
    finally:
        pool.close()


def page_faults(pid: int) -> int:
    """The process's minor page faults so far (`minflt`, the tenth field of /proc/PID/stat after the name)."""
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rpartition(")")[2].split()[7])


def test_a_codec_process_keeps_an_images_memory_for_the_next(monkeypatch):
    # Small fixed allocator thresholds, as the image worker's (local_stack), which its codec processes
    # inherit: under them every 1.2 MP picture's 3.6 MB faulted in afresh, about 900 pages an image.
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "131072")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    photo = encoded(Image.effect_noise((1280, 960), 64).convert("RGB"), "JPEG")
    pool = CodecPool(OPTIONS.model_copy(update={"concurrency": 1, "timeout_seconds": 30}))
    try:
        compressed_by(pool, photo)
        before = page_faults(pool.pids()[0] or 0)
        for _ in range(5):
            compressed_by(pool, photo)
        assert (page_faults(pool.pids()[0] or 0) - before) / 5 < 100
    finally:
        pool.close()
