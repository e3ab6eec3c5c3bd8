"""The limit: Pillow alone decoding and re-encoding the same images, one process per core."""

import io
import os
import time
from concurrent.futures import ProcessPoolExecutor

from PIL import Image

from shared.settings import CodecSettings
from worker_service.image_codec import compress

_images: list[bytes] = []
_options: CodecSettings | None = None


def _load(images: list[bytes], cpus: set[int] | None = None) -> None:
    global _images, _options
    if cpus:
        os.sched_setaffinity(0, cpus)
    _images = images
    # Once per process, as the worker does: reading the settings costs more than a small JPEG.
    _options = CodecSettings()


def plain_pillow(index: int) -> int:
    """Decode, then encode in the same format at quality 50, Pillow's defaults otherwise."""
    image = Image.open(io.BytesIO(_images[index]))
    image.load()
    buffer = io.BytesIO()
    image.save(buffer, image.format, quality=50)
    return buffer.tell()


def service_codec(index: int) -> int:
    """The service's own codec: the same Pillow work plus its metadata and format rules."""
    assert _options is not None  # set by _load, the pool's initializer
    return len(compress(_images[index], _options).data)


def images_per_second(images: list[bytes], work, processes: int | None = None, cpus: set[int] | None = None) -> float:
    """Images a second through `work`, one process per core (or `processes`), on `cpus` only when given."""
    processes = processes or os.cpu_count() or 1
    with ProcessPoolExecutor(processes, initializer=_load, initargs=(images, cpus)) as pool:
        list(pool.map(work, range(min(processes, len(images)))))  # warm the processes up
        started = time.perf_counter()
        list(pool.map(work, range(len(images)), chunksize=1))
        return len(images) / (time.perf_counter() - started)
