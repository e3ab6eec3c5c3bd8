"""The image codec in processes of its own: the worker's threads fetch and store, these decode and encode.

Decoding and encoding are the only work of an image worker that needs a core for long. So the
worker runs its products in threads, any number of which may wait on image hosts at little
cost, and `CODEC_CONCURRENCY` processes (one per core by default) do the Pillow work, each one
image at a time, for whichever thread has an image ready. The cores stay busy behind slow
hosts, and never hold more decoded pictures than there are processes.

The processes also contain what a hostile image can do to a decoder, which Python cannot
interrupt: one that works on an image for longer than `CODEC_TIMEOUT_SECONDS` is killed and
replaced, and one that dies (a crash, the OOM killer) is replaced; either way only that
image fails.

The body goes to its process, and the image comes back, through memory the two share
(`SharedBuffer`, an anonymous memory file each way), so that only a few bytes cross the pipe:
a 400 KB body written to a pipe crosses it in 64 KB pieces, each a wake-up of the other side,
on a core that the codec process would rather keep. A body or an image larger than the shared
memory (`SHARED_BYTES`) crosses the pipe instead.
"""

from __future__ import annotations

import ctypes
import dataclasses
import logging
import mmap
import multiprocessing
import os
import queue
import signal
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.reduction import DupFd
from typing import Any

from shared.errors import InternalError, OutOfTime
from shared.settings import CODEC_START_SECONDS, CodecSettings
from worker_service.image_codec import CompressedImage, ImageRejected, compress
from worker_service.step_cpu import CLOCK

log = logging.getLogger(__name__)

# Spawned, not forked: the worker has threads, and a fork copies whatever locks they held.
_CONTEXT = multiprocessing.get_context("spawn")
READY = "ready"
# Room for the body of a 1-3 MP photo, the usual catalogue image, and its image. Memory is taken only
# as it is written, and stays taken: larger ones, whose decoding dwarfs the pipe's cost, take the pipe.
SHARED_BYTES = 2 * 1024 * 1024
# The memory a codec process's allocator keeps for the next image rather than hand back: a 5 MP
# picture decoded, the usual catalogue photo's body and image.
KEPT_BYTES = 16 * 1024 * 1024
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


class CodecTimeout(ImageRejected):
    """The image took longer to decode and encode than the limit: its process was killed."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"image took longer than {seconds:g} s to decode and encode")


class CodecBusy(OutOfTime):
    """No codec process came free before the caller's deadline."""

    def __init__(self) -> None:
        super().__init__(detail="no codec process came free before the product's deadline")


class CodecFailed(InternalError):
    """The codec failed in a way that says nothing about the image (a bug, a process that died)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail=f"the codec failed: {detail}")


# -- the codec processes ----------------------------------------------------------------------------


class SharedBuffer:
    """Memory shared by the worker and one codec process, for the bytes of one image at a time.

    An anonymous memory file (`memfd_create`), handed to the codec process when it is spawned,
    rather than a /dev/shm segment, which containers keep small (64 MB in Docker by default).
    """

    def __init__(self, size: int, fd: int | None = None) -> None:
        if fd is None:
            fd = os.memfd_create("codec-bytes")
            os.ftruncate(fd, size)
        self.fd, self.size = fd, size
        self._memory = mmap.mmap(fd, size)

    def put(self, data: bytes) -> bool:
        """Whether `data` fits, and then it is written."""
        if len(data) > self.size:
            return False
        self._memory[: len(data)] = data
        return True

    def take(self, length: int) -> bytes:
        return self._memory[:length]

    def close(self) -> None:
        self._memory.close()
        os.close(self.fd)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only ever pickled to spawn a codec process, which then holds the same memory file.
        return _shared_buffer_in_child, (DupFd(self.fd), self.size)


def _shared_buffer_in_child(duplicate: Any, size: int) -> SharedBuffer:
    return SharedBuffer(size, duplicate.detach())


def _serve(connection: Connection, options: CodecSettings, bodies: SharedBuffer, images: SharedBuffer) -> None:
    """A codec process: compress each body the worker sends, answer with the outcome, until it hangs up."""
    # Stopping is the worker's business: a Ctrl-C or a SIGTERM to the process group must not end
    # the image in hand while the worker finishes its products. It ends on the worker's hang-up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _keep_memory_for_the_next_image()
    connection.send(READY)  # its imports are done: from now on only images count against the limit
    while True:
        try:
            length, inline = connection.recv()
        except EOFError:
            return
        started = time.process_time()
        kind, value = _outcome(bodies.take(length) if inline is None else inline, options)
        image_length = None  # the image's bytes are in `images` when set
        if isinstance(value, CompressedImage) and images.put(value.data):
            image_length, value = len(value.data), dataclasses.replace(value, data=b"")
        # Its own CPU for the image goes back with it, for the `codec` step (worker_service.step_cpu).
        connection.send((kind, value, time.process_time() - started, image_length))


def _keep_memory_for_the_next_image() -> None:
    """Blocks up to KEPT_BYTES from the process's own heap, which keeps up to that much free.

    The image worker runs with fixed, small allocator thresholds (local_stack/processes.py), which
    its codec processes inherit: there, every decoded picture was memory fresh from the system,
    faulted in page by page (at 128 KiB, about 820 page faults an image of 1.2 MP, which took a
    fifth of the codec's CPU: docs/performance.md). A codec process works on one image at a time,
    so what it keeps stays near this size.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except AttributeError:  # not glibc: that allocator's own defaults
        return
    mallopt(_M_MMAP_THRESHOLD, KEPT_BYTES)
    mallopt(_M_TRIM_THRESHOLD, KEPT_BYTES)


def _outcome(data: bytes, options: CodecSettings) -> tuple[str, CompressedImage | str]:
    try:
        return "image", compress(data, options)
    except ImageRejected as rejected:
        return "rejected", rejected.message
    except Exception:  # noqa: BLE001 - a bug or a decoder's surprise, told to the worker, which logs it
        return "failed", traceback.format_exc()


# -- the worker's side ------------------------------------------------------------------------------


class CodecProcess:
    """One codec process, leased to one thread at a time by `CodecPool.process`."""

    def __init__(self, options: CodecSettings) -> None:
        self.timeout = options.timeout_seconds
        self.connection, theirs = _CONTEXT.Pipe()
        # Read when the process starts, not when this module was imported: a test makes it small.
        self.bodies, self.images = SharedBuffer(SHARED_BYTES), SharedBuffer(SHARED_BYTES)
        self.process = _CONTEXT.Process(
            target=_serve, args=(theirs, options, self.bodies, self.images), name="codec", daemon=True
        )
        self.process.start()
        theirs.close()  # held open here too, a dead process would never read as gone
        # Set when an exchange did not finish cleanly: the process may be mid-image, so it is replaced.
        self.broken = False
        self.ready = False

    def compress(self, data: bytes) -> CompressedImage:
        """`data` compressed; raises `ImageRejected` (`CodecTimeout` among them) or `CodecFailed`."""
        self.broken = True
        try:
            self._await_ready()
            self.connection.send((len(data), None) if self.bodies.put(data) else (len(data), data))
            if not self.connection.poll(self.timeout):
                log.warning("codec process %s took over %g s on one image; killed", self.process.pid, self.timeout)
                self.process.kill()  # at once: its replacement is started on its next lease
                raise CodecTimeout(self.timeout)
            kind, value, cpu_seconds, image_length = self.connection.recv()
        except (EOFError, OSError) as error:
            raise CodecFailed(f"the codec process stopped while working on the image ({error!r})") from error
        self.broken = False
        CLOCK.add("codec", cpu_seconds)
        if kind == "image":
            assert isinstance(value, CompressedImage)
            if image_length is not None:
                return dataclasses.replace(value, data=self.images.take(image_length))
            return value
        raise ImageRejected(value) if kind == "rejected" else CodecFailed(value)

    def _await_ready(self) -> None:
        if self.ready:
            return
        if not self.connection.poll(CODEC_START_SECONDS) or self.connection.recv() != READY:
            raise CodecFailed(f"the codec process did not start within {CODEC_START_SECONDS:g} s")
        self.ready = True

    def stop(self) -> None:
        self.process.kill()
        self.process.join()
        self.connection.close()
        self.bodies.close()
        self.images.close()


class CodecPool:
    """CODEC_CONCURRENCY codec processes shared by the worker's threads; safe to use from any thread."""

    def __init__(self, options: CodecSettings) -> None:
        self._options = options
        self._idle: queue.SimpleQueue[CodecProcess] = queue.SimpleQueue()
        self._all: list[CodecProcess] = []
        self._closed = False
        for _ in range(options.processes):
            self._idle.put(self._start())

    @contextmanager
    def process(self, not_after: float | None = None) -> Iterator[CodecProcess]:
        """The next free process, waited for until `not_after` (monotonic time), else `CodecBusy`."""
        codec = self._take(not_after)
        try:
            codec = self._usable(codec)
            yield codec
        finally:
            # Always back, even broken or dead: the next lease replaces it, so a replacement that
            # cannot start now (no memory, no file descriptors) costs one image, not a process for good.
            self._idle.put(codec)

    def close(self) -> None:
        """Hang up on every process (each ends when it sees that) and reap them; no lease after this."""
        self._closed = True
        codecs = list(self._all)
        for codec in codecs:
            codec.connection.close()
        deadline = time.monotonic() + 5
        for codec in codecs:
            codec.process.join(max(0.0, deadline - time.monotonic()))
            codec.stop()  # kills one still at work; frees the memory shared with it

    def pids(self) -> list[int | None]:
        return [codec.process.pid for codec in self._all]

    def _start(self) -> CodecProcess:
        codec = CodecProcess(self._options)
        self._all.append(codec)
        return codec

    def _take(self, not_after: float | None) -> CodecProcess:
        wait = None if not_after is None else max(0.0, not_after - time.monotonic())
        try:
            return self._idle.get(timeout=wait)
        except queue.Empty:
            raise CodecBusy() from None

    def _usable(self, codec: CodecProcess) -> CodecProcess:
        if self._closed:
            raise CodecFailed("the worker is stopping")
        if codec.broken or not codec.process.is_alive():
            # Killed at its limit, died at work, or killed from outside while idle: no image of
            # this lease has reached it, so the image goes to a new one.
            log.warning("codec process %s is gone; starting another", codec.process.pid)
            codec = self._replace(codec)
        return codec

    def _replace(self, codec: CodecProcess) -> CodecProcess:
        codec.stop()
        replacement = self._start()
        self._all.remove(codec)
        return replacement
