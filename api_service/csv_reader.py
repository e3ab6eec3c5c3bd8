"""Reads the product CSV a client uploads and checks it against the service's contract.

The contract, as promised to clients:

    UTF-8 (a BOM is allowed), comma-separated, a header row, then one row per product:
    S. No.,Product Name,Input Image Urls
    1,SKU1,"https://img.example.com/a.jpg,https://img.example.com/b.jpg"
    2,SKU2,https://img.example.com/c.png

`read_products` streams the file row by row and either returns every product, in file order,
or raises `CsvValidationError` listing every problem it found (up to a limit), each with the
physical line it starts on (the header is line 1) and its column. Uploads that ask for more
work than one request may do raise a subclass of `UploadTooLarge`, which the API answers with 413.
"""

import csv
import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from shared.errors import ServiceError
from shared.settings import UploadLimits
from shared.url_rules import redact_credentials, url_problem

SERIAL_NUMBER = "S. No."
PRODUCT_NAME = "Product Name"
INPUT_IMAGE_URLS = "Input Image Urls"

# Header names are compared after lowercasing and dropping everything but letters and digits.
_COLUMN_BY_NORMALISED_NAME = {
    "sno": SERIAL_NUMBER,
    "serialnumber": SERIAL_NUMBER,
    "productname": PRODUCT_NAME,
    "inputimageurls": INPUT_IMAGE_URLS,
    "inputimageurl": INPUT_IMAGE_URLS,
}
_REQUIRED_COLUMNS = (SERIAL_NUMBER, PRODUCT_NAME, INPUT_IMAGE_URLS)
_EXPECTED_HEADER = ",".join(_REQUIRED_COLUMNS)

# Serial numbers are stored as MongoDB int64.
_MAX_SERIAL_NUMBER = 2**63 - 1

# One quoted cell may hold thousands of image URLs, so the csv module's 128 KiB default is too
# small; a cell beyond this bound is a mistake, and the csv module then stops with a clean error
# instead of buffering it. The limit is process-wide; nothing else in the service reads CSV.
MAX_CELL_CHARS = 4 * 1024 * 1024
csv.field_size_limit(MAX_CELL_CHARS)

_SHOWN_VALUE_CHARS = 60


@dataclass(frozen=True, slots=True)
class ProductRow:
    serial_number: int
    product_name: str
    input_image_urls: tuple[str, ...]
    line: int


@dataclass(frozen=True, slots=True)
class CsvIssue:
    line: int
    column: str | None
    message: str


class CsvValidationError(ServiceError):
    """The CSV breaks the contract; `errors` lists every problem found, in file order, and the
    API's answer (400) lists them too, each with its line and column."""

    http_status = 400

    def __init__(self, message: str, errors: list[CsvIssue]) -> None:
        listed = [{"line": e.line, "column": e.column, "message": e.message} for e in errors]
        super().__init__(message, extra={"errors": listed})
        self.errors = errors


class UploadTooLarge(ServiceError):
    """The upload asks for more work than one request may do."""

    http_status = 413


class TooManyProducts(UploadTooLarge):
    pass


class TooManyImages(UploadTooLarge):
    pass


def read_products(binary_file: IO[bytes], limits: UploadLimits) -> list[ProductRow]:
    """Returns the products of the CSV in `binary_file`, read from its start, in file order.

    Raises CsvValidationError, TooManyProducts or TooManyImages. The file is left open.
    """
    collector = _ProductCollector(limits)
    try:
        with _text_view(binary_file) as text:
            collector.read(_numbered_rows(text))
    except UnicodeDecodeError:
        line = _first_line_not_utf8(binary_file)
        message = f"the file is not UTF-8 text (invalid bytes on line {line}); save it as CSV UTF-8"
        raise CsvValidationError(message, [CsvIssue(line, None, message)]) from None
    return collector.products()


@contextmanager
def _text_view(binary_file: IO[bytes], errors: str = "strict") -> Iterator[io.TextIOWrapper]:
    binary_file.seek(0)
    # newline="" leaves line endings to the csv module, so quoted cells may span lines.
    text = io.TextIOWrapper(binary_file, encoding="utf-8-sig", errors=errors, newline="")
    try:
        yield text
    finally:
        # Closing or garbage-collecting an attached wrapper would close the caller's file.
        text.detach()


def _first_line_not_utf8(binary_file: IO[bytes]) -> int:
    """The first line holding bytes that are not UTF-8, counted the way the csv module counts."""
    # surrogateescape turns each undecodable byte into a lone surrogate, which UTF-8 never decodes to.
    with _text_view(binary_file, errors="surrogateescape") as text:
        for line_number, line in enumerate(text, start=1):
            if any("\udc80" <= char <= "\udcff" for char in line):
                return line_number
    return 1


class _MalformedFile(Exception):
    """The csv module cannot read on from this row, so nothing after it can be checked."""

    def __init__(self, issue: CsvIssue) -> None:
        super().__init__(issue.message)
        self.issue = issue


def _numbered_rows(text: io.TextIOWrapper) -> Iterator[tuple[int, list[str]]]:
    """Yields every row that is not blank with the physical line it starts on."""
    reader = csv.reader(text, strict=True, skipinitialspace=True)
    while True:
        line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _MalformedFile(CsvIssue(line, None, _csv_error_message(error))) from None
        if any("\0" in cell for cell in cells):
            message = "the line contains a NUL character; save the file as CSV UTF-8 text"
            raise _MalformedFile(CsvIssue(line, None, message))
        if any(cell.strip() for cell in cells):
            yield line, cells


def _csv_error_message(error: csv.Error) -> str:
    reason = str(error)
    if reason.startswith("unexpected end of data"):
        return 'a quoted cell is never closed; write a double quote inside a quoted cell as ""'
    if reason.startswith("field larger than field limit"):
        return f"a cell is longer than {MAX_CELL_CHARS} characters"
    if reason.startswith("',' expected after '\"'"):
        return 'text follows the closing quote of a cell; write a double quote inside a quoted cell as ""'
    return f"the row is not valid CSV: {reason}"


@dataclass(frozen=True, slots=True)
class _Columns:
    """Where the required columns sit in the header, and how many header cells there are."""

    serial_number: int
    product_name: int
    image_urls: int
    width: int

    @property
    def image_urls_are_last(self) -> bool:
        return self.image_urls == self.width - 1

    def serial_number_cell(self, cells: list[str]) -> str:
        return _cell_at(cells, self.serial_number)

    def product_name_cell(self, cells: list[str]) -> str:
        return _cell_at(cells, self.product_name)

    def image_url_cells(self, cells: list[str]) -> list[str]:
        # Unquoted URLs after the last header column spilled out of the URL cell.
        if self.image_urls_are_last:
            return cells[self.image_urls :]
        return [_cell_at(cells, self.image_urls)]


class _ReadingStopped(Exception):
    """As many problems as may be reported have been found."""


class _ProductCollector:
    """Checks rows one at a time, remembering what later rows are checked against."""

    def __init__(self, limits: UploadLimits) -> None:
        self._limits = limits
        self._issues: list[CsvIssue] = []
        self._products: list[ProductRow] = []
        self._first_line_of_serial: dict[int, int] = {}
        self._product_count = 0
        self._image_count = 0
        self._stopped_early = False

    def read(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        try:
            self._read_rows(rows)
        except _MalformedFile as malformed:
            # Rows before it stayed under the reporting limit, so this last issue still fits.
            self._issues.append(malformed.issue)
        except _ReadingStopped:
            self._stopped_early = True

    def products(self) -> list[ProductRow]:
        """The products read, or CsvValidationError when any problem was found."""
        if self._issues:
            raise CsvValidationError(self._summary(), self._issues)
        return self._products

    def _summary(self) -> str:
        count = len(self._issues)
        if self._stopped_early:
            return f"the CSV has more errors than can be listed; here are the first {count}"
        if count == 1 and self._issues[0].column is None:
            return self._issues[0].message
        return f"the CSV has {count} error" + ("" if count == 1 else "s")

    def _read_rows(self, rows: Iterator[tuple[int, list[str]]]) -> None:
        header = next(rows, None)
        if header is None:
            message = f"the file is empty; it needs the header row {_EXPECTED_HEADER} and one row per product"
            self._report(1, None, message)
            return
        header_line, header_cells = header
        columns = self._read_header(header_line, header_cells)
        if columns is None:
            return
        for line, cells in rows:
            self._add_product(line, cells, columns)
        if self._product_count == 0:
            self._report(header_line, None, "the CSV has a header row but no product rows")

    def _read_header(self, line: int, cells: list[str]) -> _Columns | None:
        positions: dict[str, list[int]] = {column: [] for column in _REQUIRED_COLUMNS}
        for index, cell in enumerate(cells):
            column = _COLUMN_BY_NORMALISED_NAME.get(_normalise_header_name(cell))
            if column is not None:
                positions[column].append(index)
        for column, indexes in positions.items():
            if not indexes:
                self._report(line, column, f'the header row has no "{column}" column')
            elif len(indexes) > 1:
                self._report(line, column, f'the header row has more than one "{column}" column')
        if any(len(indexes) != 1 for indexes in positions.values()):
            return None
        return _Columns(
            serial_number=positions[SERIAL_NUMBER][0],
            product_name=positions[PRODUCT_NAME][0],
            image_urls=positions[INPUT_IMAGE_URLS][0],
            width=_used_width(cells),
        )

    def _add_product(self, line: int, cells: list[str], columns: _Columns) -> None:
        self._count_product()
        fits_header = self._check_width(line, cells, columns)
        serial_number = self._serial_number(line, columns.serial_number_cell(cells))
        product_name = self._product_name(line, columns.product_name_cell(cells))
        image_urls = self._image_urls(line, columns.image_url_cells(cells))
        if not fits_header or serial_number is None or product_name is None or image_urls is None:
            return
        self._products.append(ProductRow(serial_number, product_name, image_urls, line))

    def _count_product(self) -> None:
        self._product_count += 1
        if self._product_count > self._limits.max_products:
            limit = self._limits.max_products
            raise TooManyProducts(f"the CSV has more than {limit} products; send at most {limit} per request")

    def _count_images(self, count: int) -> None:
        self._image_count += count
        if self._image_count > self._limits.max_images_per_request:
            limit = self._limits.max_images_per_request
            raise TooManyImages(f"the CSV has more than {limit} image URLs; send at most {limit} per request")

    def _check_width(self, line: int, cells: list[str], columns: _Columns) -> bool:
        if columns.image_urls_are_last:
            return True
        width = _used_width(cells)
        if width <= columns.width:
            return True
        message = f"the row has {width} cells but the header has {columns.width}; quote cells that contain commas"
        self._report(line, None, message)
        return False

    def _serial_number(self, line: int, cell: str) -> int | None:
        try:
            serial_number = _parse_serial_number(cell.strip())
        except _InvalidValue as invalid:
            self._report(line, SERIAL_NUMBER, invalid.message)
            return None
        first_line = self._first_line_of_serial.setdefault(serial_number, line)
        if first_line != line:
            message = f"serial number {serial_number} already used on line {first_line}"
            self._report(line, SERIAL_NUMBER, message)
            return None
        return serial_number

    def _product_name(self, line: int, cell: str) -> str | None:
        name = cell.strip()
        limit = self._limits.max_product_name_length
        if not name:
            self._report(line, PRODUCT_NAME, "product name is empty")
            return None
        if len(name) > limit:
            message = f"product name is {len(name)} characters long; the limit is {limit}"
            self._report(line, PRODUCT_NAME, message)
            return None
        return name

    def _image_urls(self, line: int, cells: list[str]) -> tuple[str, ...] | None:
        # Empty entries come from a trailing or doubled comma and say nothing.
        urls = [url.strip() for cell in cells for url in cell.split(",") if url.strip()]
        self._count_images(len(urls))
        if not urls:
            message = "no image URL; give one or more http or https URLs separated by commas"
            self._report(line, INPUT_IMAGE_URLS, message)
            return None
        limit = self._limits.max_images_per_product
        if len(urls) > limit:
            message = f"the product has {len(urls)} image URLs; the limit is {limit} per product"
            self._report(line, INPUT_IMAGE_URLS, message)
            return None
        all_valid = True
        for url in urls:
            problem = url_problem(url, self._limits.max_url_length)
            if problem is not None:
                # The message goes back to the client and may be logged: never with a password.
                self._report(line, INPUT_IMAGE_URLS, f"image URL {_shown(redact_credentials(url))} {problem}")
                all_valid = False
        return tuple(urls) if all_valid else None

    def _report(self, line: int, column: str | None, message: str) -> None:
        self._issues.append(CsvIssue(line, column, message))
        if len(self._issues) >= self._limits.max_reported_errors:
            raise _ReadingStopped


class _InvalidValue(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _cell_at(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _used_width(cells: list[str]) -> int:
    """How many cells a row has, not counting empty ones at its end."""
    return max((index + 1 for index, cell in enumerate(cells) if cell.strip()), default=0)


def _normalise_header_name(name: str) -> str:
    return "".join(char for char in name.lower() if char.isalnum())


def _parse_serial_number(text: str) -> int:
    if not text:
        raise _InvalidValue("serial number is empty")
    significant_digits = text.lstrip("0")
    if not (text.isascii() and text.isdigit()) or not significant_digits:
        raise _InvalidValue(f"serial number must be a positive integer, got {_shown(text)}")
    # Compared by length first: int() refuses strings of more than 4300 digits.
    if len(significant_digits) > len(str(_MAX_SERIAL_NUMBER)) or int(significant_digits) > _MAX_SERIAL_NUMBER:
        message = f"serial number {_shown(text)} is too large; the largest allowed is {_MAX_SERIAL_NUMBER}"
        raise _InvalidValue(message)
    return int(significant_digits)


def _shown(value: str) -> str:
    """`value` quoted for a message, shortened when long."""
    if len(value) > _SHOWN_VALUE_CHARS:
        value = value[: _SHOWN_VALUE_CHARS - 3] + "..."
    return repr(value)
