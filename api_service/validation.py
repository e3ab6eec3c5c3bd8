"""Checks on values a client sends besides the CSV."""

from urllib.parse import urlsplit

from shared.address_guard import address_problem
from shared.settings import Settings
from shared.url_rules import literal_address, url_problem

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def webhook_url_problem(url: str, settings: Settings) -> str | None:
    """Why a webhook URL is refused, or None.

    Names are resolved (and checked again) at delivery time; a literal address, in any
    form the resolver reads as one (`127.1`, `2130706433`), can be judged now, so an
    obviously private target is refused at once.
    """
    problem = url_problem(url, settings.limits.max_url_length)
    if problem or settings.network.allow_private_networks:
        return problem
    host = urlsplit(url).hostname or ""
    address = literal_address(host)
    if address is None:
        return None
    reason = address_problem(address)
    if reason is None:
        return None
    shown = host if host == str(address) else f"{host} ({address})"
    return f"webhook URL points to a blocked address: {shown} is {reason}"


def idempotency_key_problem(key: str) -> str | None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        return f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
    return None
