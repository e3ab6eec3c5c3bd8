"""Checks on values a client sends besides the CSV."""

import ipaddress
from urllib.parse import urlsplit

from api_service.csv_reader import url_problem
from shared.address_guard import address_problem
from shared.settings import Settings

MAX_IDEMPOTENCY_KEY_LENGTH = 255


def webhook_url_problem(url: str, settings: Settings) -> str | None:
    """Why a webhook URL is refused, or None.

    Names are resolved (and checked again) at delivery time; a literal address can be
    judged now, so an obviously private target is refused at once.
    """
    problem = url_problem(url, settings.max_url_length)
    if problem or settings.allow_private_networks:
        return problem
    host = urlsplit(url).hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = address_problem(address)
    return f"webhook URL points to a blocked address: {host} is {reason}" if reason else None


def idempotency_key_problem(key: str) -> str | None:
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        return f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
    return None
