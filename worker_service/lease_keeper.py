"""Keeping alive the leases of the products a worker process works on, so only a lost worker loses one.

Each product's lease is renewed a third of PRODUCT_LEASE_SECONDS after it was claimed or last
renewed, for as long as the product is worked on. One thread a process renews them all, rather
than one a product: starting and joining a thread for every product cost the worker 0.19 ms of
its CPU a product (measured alone, docs/performance.md). Every lease has the same period, so the
products held, in the order they were taken or last renewed, are also in the order they are due.
"""

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.models import utcnow
from shared.store import product_claims
from shared.store.operations import SyncStore
from shared.store.product_claims import ProductWork

log = logging.getLogger("worker.leases")

Held = tuple[ProductWork, int]  # the product and the attempt that holds it


class LeaseKeeper:
    def __init__(self, store: Callable[[], SyncStore], lease_seconds: float) -> None:
        self._store = store  # made on first use: a product shorter than a third of its lease needs none
        self._lease_seconds = lease_seconds
        self._every = lease_seconds / 3
        self._changed = threading.Condition()
        # Each hold (by a key of its own, so a product held twice is renewed twice) and when it is due.
        self._due: OrderedDict[object, tuple[Held, float]] = OrderedDict()
        self._closed = False
        self._thread: threading.Thread | None = None

    @contextmanager
    def keeping(self, work: ProductWork, attempt: int) -> Iterator[None]:
        """Renew the lease of this attempt at the product while the block runs."""
        key = object()
        with self._changed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_when_due, name="lease-keeper", daemon=True)
                self._thread.start()
            self._due[key] = ((work, attempt), time.monotonic() + self._every)
            if len(self._due) == 1:
                self._changed.notify()  # the keeper waited for a first product
        try:
            yield
        finally:
            with self._changed:
                self._due.pop(key, None)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _renew_when_due(self) -> None:
        while (due := self._next_due()) is not None:
            key, (work, attempt) = due
            try:
                self._store().run(product_claims.renew_lease(work, attempt, utcnow(), self._lease_seconds))
            except Exception:
                log.warning("could not renew the lease of %s/%s", work.request_id, work.serial_number, exc_info=True)
            with self._changed:
                if key in self._due:  # still worked on: due again a period from now, so last in line
                    self._due[key] = ((work, attempt), time.monotonic() + self._every)
                    self._due.move_to_end(key)

    def _next_due(self) -> tuple[object, Held] | None:
        """Wait for the first product in line to be due, and take it; None once closed."""
        with self._changed:
            while not self._closed:
                if not self._due:
                    self._changed.wait()
                    continue
                key, (held, due_at) = next(iter(self._due.items()))
                wait = due_at - time.monotonic()
                if wait <= 0:
                    return key, held
                self._changed.wait(wait)
            return None
