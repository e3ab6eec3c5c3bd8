"""The largest request the upload limits accept stays under MongoDB's 16 MiB document limit."""

from dataclasses import dataclass

import bson

from shared.models import utcnow
from shared.settings import Settings
from shared.storage import image_key
from shared.store.requests import MAX_ERROR_MESSAGE, new_request

MONGODB_DOCUMENT_LIMIT = 16 * 1024 * 1024
REQUEST_ID = "3f2c8a9e-5b1d-4c7e-9a2f-6d8e0b1c2a3f"


@dataclass
class Row:
    serial_number: int
    product_name: str
    input_image_urls: tuple[str, ...]


def url_of_length(length: int, n: int) -> str:
    prefix = f"https://img.example.com/{n}/"
    return prefix + "a" * (length - len(prefix))


def csv_bytes(rows: list[Row]) -> int:
    return sum(len(f'{r.serial_number},{r.product_name},"{",".join(r.input_image_urls)}"\n') for r in rows)


def finished(document: dict, *, failed: bool) -> dict:
    """The document once every image is done: all stored, or all failed with the longest message."""
    for product in document["products"]:
        urls = product["input_image_urls"]
        if failed:
            product["errors"] = [{"index": i, "message": "x" * MAX_ERROR_MESSAGE} for i in range(len(urls))]
        else:
            product["output_keys"] = [
                image_key(REQUEST_ID, product["serial_number"], i, "webp") for i in range(len(urls))
            ]
        product["status"] = "failed" if failed else "completed"
        product["attempts"] = 3
    return document


def largest_documents(products: int, images_per_product: int, budget: int) -> list[int]:
    """BSON sizes of the largest finished documents for a file of `budget` bytes."""
    name = "N" * 255
    # Each row spends its share of the file on its name, serial, quotes and commas, the rest on URLs.
    per_url = (budget // products - len(name) - 12) // images_per_product - 1
    rows = [
        Row(i, name, tuple(url_of_length(min(per_url, 2048), i * 10 + k) for k in range(images_per_product)))
        for i in range(1, products + 1)
    ]
    assert csv_bytes(rows) <= budget
    sizes = []
    for failed in (False, True):
        document = new_request(
            REQUEST_ID,
            rows,
            now=utcnow(),
            webhook_url="https://h.example.com/" + "w" * 2000,
            idempotency_key="k" * 255,
            file_sha256="0" * 64,
        )
        sizes.append(len(bson.encode(finished(document, failed=failed))))
    return sizes


def test_the_largest_accepted_request_fits_in_one_document():
    settings = Settings.load().limits
    budget = settings.max_upload_bytes
    shapes = [
        (settings.max_products, 1),
        (settings.max_products, settings.max_images_per_request // settings.max_products),
        (settings.max_images_per_request // 4, 4),
        (1000, 20),
    ]
    for products, per_product in shapes:
        for size in largest_documents(products, per_product, budget):
            print(f"{products} products x {per_product} images, 10 MiB file: {size / 1024 / 1024:.2f} MiB")
            assert size < MONGODB_DOCUMENT_LIMIT * 0.97, (products, per_product, size)


def test_without_the_upload_cap_10000_products_with_2kb_urls_would_not_fit():
    """Why the 10 MiB upload cap matters: the issue's example, measured."""
    rows = [Row(i, "SKU", (url_of_length(2048, i),)) for i in range(1, 10_001)]
    document = new_request(REQUEST_ID, rows, now=utcnow(), webhook_url=None, idempotency_key=None, file_sha256="0" * 64)
    assert len(bson.encode(document)) > MONGODB_DOCUMENT_LIMIT
    assert csv_bytes(rows) > Settings.load().limits.max_upload_bytes
