"""The lease rule, once: whoever works on a product or a webhook delivery holds it until its lease
expires, and only a lost worker lets it expire. A lease is live while its expiry is in the future;
none (null, or no field) and a past one are not live."""

from datetime import datetime, timedelta

from shared.store.operations import Query


def no_live_lease(now: datetime) -> Query:
    """The condition on a lease's expiry field that no live lease holds.

    One condition on the field rather than an $or of "null or past", which would make the embedded
    server scan the collection when the filter also names `_id` (`operations.checked`).
    """
    return {"$not": {"$gt": now}}


def is_live(expires_at: datetime | None, now: datetime) -> bool:
    """What `no_live_lease` leaves out, decided in Python on a document read by another condition."""
    return expires_at is not None and expires_at > now


def lease_until(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)
