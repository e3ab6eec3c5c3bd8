"""Sending a task from the API. Redis may not answer: the request is stored already, and the sweeper
sends what was not sent, so the caller is answered all the same."""

import logging
from collections.abc import Callable

from fastapi.concurrency import run_in_threadpool

log = logging.getLogger("api.sending")


async def send(what: str, request_id: str, call: Callable[[], None]) -> None:
    """Run `call` (a blocking send) off the event loop; a failure is logged, not raised."""
    try:
        await run_in_threadpool(call)
    except Exception:
        log.exception("could not send the %s of %s now; the sweeper will", what, request_id)
