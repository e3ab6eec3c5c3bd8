"""The output CSV: the input columns plus the output URLs, safe to open in a spreadsheet."""

import csv
import io
from collections.abc import AsyncIterator, Iterable

from shared.storage import Storage
from shared.store.requests import ProductDocument
from shared.views import output_urls_of

HEADER = ["S. No.", "Product Name", "Input Image Urls", "Output Image Urls"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formula(cell: str) -> str:
    """Spreadsheets run a cell starting with one of these as a formula; a leading ' keeps it text."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell


def output_row(product: ProductDocument, storage: Storage) -> list[str]:
    outputs = output_urls_of(product, storage)
    cells = [
        str(product["serial_number"]),
        product["product_name"],
        ",".join(product["input_image_urls"]),
        ",".join(url or "" for url in outputs),
    ]
    return [neutralise_formula(cell) for cell in cells]


def csv_line(cells: Iterable[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(cells)
    return buffer.getvalue()


async def output_csv(products: AsyncIterator[ProductDocument], storage: Storage) -> AsyncIterator[str]:
    yield csv_line(HEADER)
    async for product in products:
        yield csv_line(output_row(product, storage))
