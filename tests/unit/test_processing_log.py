"""The processing log's entries, built from a product and its claim document."""

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

from api_service.processing_log import product_entries, products_on_page
from shared.models import utcnow
from shared.store.product_claims import ImageDetails, image_log_of
from worker_service.image_work import ImageOutcome
from worker_service.product_processing import product_result as result_of


class Urls:
    def public_url(self, key: str) -> str:
        return f"https://cdn.example.com/{key}"


PRODUCT = {
    "serial_number": 7,
    "status": "pending",
    "input_image_urls": ["https://u:pw@img.example.com/a.jpg", "https://img.example.com/b"],
}
NOW = utcnow()


def test_images_of_an_unclaimed_product_are_pending_and_of_a_leased_one_processing() -> None:
    [pending, _] = product_entries(PRODUCT, range(2), None, Urls(), NOW)
    assert (pending.status, pending.input_url, pending.output_url, pending.bytes_in) == (
        "pending", "https://u:***@img.example.com/a.jpg", None, None,
    )  # fmt: skip
    leased = {"done": False, "lease_expires_at": NOW + timedelta(seconds=5)}
    assert {e.status for e in product_entries(PRODUCT, range(2), leased, Urls(), NOW)} == {"processing"}
    expired = {"done": False, "lease_expires_at": NOW - timedelta(seconds=5)}
    assert {e.status for e in product_entries(PRODUCT, range(2), expired, Urls(), NOW)} == {"pending"}


def test_a_done_products_images_show_their_outcome_and_details() -> None:
    outcomes = [
        ImageOutcome(key="r/7-0.jpg", details=ImageDetails(attempts=2, format="JPEG", bytes_in=900, bytes_out=300)),
        ImageOutcome(error="HTTP 404", details=ImageDetails(attempts=1, download_ms=3.5)),
    ]
    claim = {
        "done": True,
        "lease_expires_at": None,
        "result": result_of(outcomes),
        "image_log": image_log_of([outcome.details for outcome in outcomes]),
    }
    stored, failed = product_entries(PRODUCT, range(2), claim, Urls(), NOW)
    assert (stored.status, stored.output_url, stored.attempts, stored.format, stored.bytes_out) == (
        "completed", "https://cdn.example.com/r/7-0.jpg", 2, "JPEG", 300,
    )  # fmt: skip
    assert (failed.status, failed.error, failed.download_ms, failed.output_url) == ("failed", "HTTP 404", 3.5, None)
    # A claim recorded before the log was kept: outcomes without details.
    del claim["image_log"]
    assert [e.bytes_in for e in product_entries(PRODUCT, range(2), claim, Urls(), NOW)] == [None, None]


def test_a_page_is_counted_over_images_across_products() -> None:
    async def products() -> AsyncIterator[dict[str, list[str]]]:
        for count in (2, 1, 3):
            yield {"input_image_urls": ["u"] * count}

    page = asyncio.run(products_on_page(products(), offset=1, limit=3))
    assert [(index, positions) for index, _, positions in page] == [
        (0, range(1, 2)),
        (1, range(1)),
        (2, range(1)),
    ]
    assert asyncio.run(products_on_page(products(), offset=6, limit=3)) == []
