"""Tests of the product CSV contract as `api_service.csv_reader` enforces it."""

import contextlib
import csv
import io
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_service.csv_reader import (
    MAX_CELL_CHARS,
    CsvIssue,
    CsvValidationError,
    ProductRow,
    TooManyImages,
    TooManyProducts,
    UploadTooLarge,
    read_products,
)
from shared.settings import Settings, UploadLimits
from shared.url_rules import url_problem
from tests.support.settings import changed

HEADER = "S. No.,Product Name,Input Image Urls"
SERIAL, NAME, URLS = "S. No.", "Product Name", "Input Image Urls"
A = "https://img.example.com/a.jpg"
B = "https://img.example.com/b.jpg"
C = "https://img.example.com/c.png"
SAMPLE = f'{HEADER}\n1,SKU1,"{A},{B}"\n2,SKU2,{C}\n'
SAMPLE_PRODUCTS = [ProductRow(1, "SKU1", (A, B), 2), ProductRow(2, "SKU2", (C,), 3)]
DEFAULT_LIMITS = UploadLimits(_env_file=None)
NUL_MESSAGE = "the line contains a NUL character; save the file as CSV UTF-8 text"
QUOTE_NEVER_CLOSED = 'a quoted cell is never closed; write a double quote inside a quoted cell as ""'
TEXT_AFTER_QUOTE = 'text follows the closing quote of a cell; write a double quote inside a quoted cell as ""'


def read(content: str | bytes, limits: UploadLimits = DEFAULT_LIMITS) -> list[ProductRow]:
    data = content.encode() if isinstance(content, str) else content
    return read_products(io.BytesIO(data), limits)


def rejection(content: str | bytes, limits: UploadLimits = DEFAULT_LIMITS) -> CsvValidationError:
    with pytest.raises(CsvValidationError) as raised:
        read(content, limits)
    return raised.value


def issues(content: str | bytes, limits: UploadLimits = DEFAULT_LIMITS) -> list[tuple[int, str | None, str]]:
    return [(issue.line, issue.column, issue.message) for issue in rejection(content, limits).errors]


def followed_by_bytes_never_read(content: str) -> bytes:
    """`content` with invalid UTF-8 far enough behind it that only reading on would reach it."""
    return content.encode() + b"\n" * 100_000 + b"\xff\n"


def product_rows(count: int, urls_per_row: int = 1) -> str:
    cell = ",".join(f"https://img.example.com/{n}.jpg" for n in range(urls_per_row))
    return HEADER + "\n" + "".join(f'{n},SKU{n},"{cell}"\n' for n in range(1, count + 1))


# The sample file and its encodings.


def test_the_sample_file_gives_its_products_in_file_order() -> None:
    assert read(SAMPLE) == SAMPLE_PRODUCTS


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xef\xbb\xbf" + SAMPLE.encode(), id="utf-8 BOM"),
        pytest.param(SAMPLE.replace("\n", "\r\n").encode(), id="CRLF"),
        pytest.param(SAMPLE.rstrip("\n").encode(), id="no final newline"),
    ],
)
def test_the_sample_file_reads_the_same_in_every_accepted_form(data: bytes) -> None:
    assert read(data) == SAMPLE_PRODUCTS


def test_a_spooled_upload_is_read_from_its_start_and_left_open() -> None:
    with tempfile.SpooledTemporaryFile(max_size=1024) as upload:
        upload.write(SAMPLE.encode())  # the position is now at the end, as after spooling
        assert read_products(upload, DEFAULT_LIMITS) == SAMPLE_PRODUCTS
        assert not upload.closed
        upload.seek(0)
        assert upload.read() == SAMPLE.encode()


def test_limits_come_from_the_settings() -> None:
    configured = Settings.load(
        max_products=7,
        max_images_per_request=8,
        max_images_per_product=5,
        max_url_length=90,
        max_product_name_length=10,
        max_reported_errors=11,
    )
    assert configured.limits == UploadLimits(
        _env_file=None,
        max_products=7,
        max_images_per_request=8,
        max_images_per_product=5,
        max_url_length=90,
        max_product_name_length=10,
        max_reported_errors=11,
    )


# The header.


@pytest.mark.parametrize(
    "header",
    [
        "s. no.,product name,input image urls",
        "S. NO.,PRODUCT NAME,INPUT IMAGE URLS",
        "SNo,ProductName,InputImageUrls",
        "s_no,product-name, input_image_urls ",
        "Serial Number,Product Name,Input Image Urls",
        "S. No.,Product Name,Input Image Url",
        "serial number,product name,input image url",
        "S. No.,Product Name,Input Image Urls,,",
    ],
)
def test_header_names_ignore_case_spaces_punctuation_and_accept_aliases(header: str) -> None:
    assert read(SAMPLE.replace(HEADER, header)) == SAMPLE_PRODUCTS


def test_header_columns_may_come_in_any_order() -> None:
    content = f'Input Image Urls,S. No.,Product Name\n"{A},{B}",1,SKU1\n{C},2,SKU2\n'
    assert read(content) == SAMPLE_PRODUCTS


def test_spaces_before_a_quoted_cell_are_ignored() -> None:
    assert read(f'{HEADER}\n1, "SKU1", "{A}, {B}"\n 2 ,SKU2, {C}\n') == SAMPLE_PRODUCTS


def test_unknown_header_columns_are_ignored() -> None:
    content = f'Notes,S. No.,Product Name,Colour,Input Image Urls\nx,1,SKU1,red,"{A},{B}"\n,2,SKU2,,{C}\n'
    assert read(content) == SAMPLE_PRODUCTS


@pytest.mark.parametrize("missing", [SERIAL, NAME, URLS])
def test_a_missing_column_is_one_error_naming_it(missing: str) -> None:
    header = ",".join(column for column in (SERIAL, NAME, URLS) if column != missing)
    assert issues(f"{header}\n1,SKU1\n") == [(1, missing, f'the header row has no "{missing}" column')]


def test_a_column_given_twice_is_an_error() -> None:
    content = f"S. No.,Product Name,Input Image Urls,Serial Number\n1,SKU1,{A},1\n"
    assert issues(content) == [(1, SERIAL, 'the header row has more than one "S. No." column')]


# Serial numbers.


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("abc", "serial number must be a positive integer, got 'abc'"),
        ("0", "serial number must be a positive integer, got '0'"),
        ("000", "serial number must be a positive integer, got '000'"),
        ("-1", "serial number must be a positive integer, got '-1'"),
        ("+1", "serial number must be a positive integer, got '+1'"),
        ("1.5", "serial number must be a positive integer, got '1.5'"),
        ("1e3", "serial number must be a positive integer, got '1e3'"),
        ("\u00b2", "serial number must be a positive integer, got '\u00b2'"),
        ("", "serial number is empty"),
        ("   ", "serial number is empty"),
        (
            "9223372036854775808",
            "serial number '9223372036854775808' is too large; the largest allowed is 9223372036854775807",
        ),
        (
            "9" * 5000,
            f"serial number '{'9' * 57}...' is too large; the largest allowed is 9223372036854775807",
        ),
    ],
)
def test_a_serial_number_that_is_not_a_positive_integer_is_an_error(cell: str, message: str) -> None:
    assert issues(f'{HEADER}\n"{cell}",SKU1,{A}\n') == [(2, SERIAL, message)]


@pytest.mark.parametrize(
    ("cell", "serial"),
    [("7", 7), (" 7 ", 7), ("007", 7), ("0" * 5000 + "7", 7), ("9223372036854775807", 2**63 - 1)],
)
def test_a_serial_number_is_read_as_an_integer(cell: str, serial: int) -> None:
    assert read(f'{HEADER}\n"{cell}",SKU1,{A}\n') == [ProductRow(serial, "SKU1", (A,), 2)]


def test_a_repeated_serial_number_is_an_error_on_the_later_line_naming_the_first() -> None:
    content = f"{HEADER}\n3,SKU1,{A}\n4,SKU2,{B}\n03,SKU3,{C}\n3,SKU4,{C}\n"
    assert issues(content) == [
        (4, SERIAL, "serial number 3 already used on line 2"),
        (5, SERIAL, "serial number 3 already used on line 2"),
    ]


# Product names.


@pytest.mark.parametrize(
    ("cell", "message"),
    [
        ("", "product name is empty"),
        ("   ", "product name is empty"),
        ("x" * 256, "product name is 256 characters long; the limit is 255"),
    ],
)
def test_an_empty_or_too_long_product_name_is_an_error(cell: str, message: str) -> None:
    assert issues(f'{HEADER}\n1,"{cell}",{A}\n') == [(2, NAME, message)]


@pytest.mark.parametrize(
    ("cell", "name"),
    [
        ("x" * 255, "x" * 255),
        ("  SKU 1  ", "SKU 1"),
        ('"Big" SKU, blue', '"Big" SKU, blue'),
        ("Čaj 茶", "Čaj 茶"),
    ],
)
def test_a_product_name_is_kept_without_surrounding_spaces(cell: str, name: str) -> None:
    quoted = '"' + cell.replace('"', '""') + '"'
    assert read(f"{HEADER}\n1,{quoted},{A}\n") == [ProductRow(1, name, (A,), 2)]


def test_the_name_length_limit_comes_from_the_limits() -> None:
    assert issues(f"{HEADER}\n1,SKU12,{A}\n", changed(DEFAULT_LIMITS, max_product_name_length=4)) == [
        (2, NAME, "product name is 5 characters long; the limit is 4")
    ]


# Image URLs.


LONG_URL = "https://img.example.com/" + "a" * 2025  # 2049 characters


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://img.example.com/a.jpg", "is not an absolute http or https URL"),
        ("/images/a.jpg", "is not an absolute http or https URL"),
        ("img.example.com/a.jpg", "is not an absolute http or https URL"),
        ("javascript:alert(1)", "is not an absolute http or https URL"),
        ("https://", "has no host name"),
        ("http:/a.jpg", "has no host name"),
        ("https://img.example.com/a b.jpg", "contains a space or control character"),
        ("https://img.example.com/a\tb.jpg", "contains a space or control character"),
        ("https://img.example.com:99999/a.jpg", "is not a valid URL"),
        ("http://[::1/a.jpg", "is not a valid URL"),
    ],
)
def test_an_image_url_that_is_not_an_absolute_http_url_is_an_error(url: str, problem: str) -> None:
    assert issues(f'{HEADER}\n1,SKU1,"{A},{url}"\n') == [(2, URLS, f"image URL {url!r} {problem}")]


def test_an_image_url_of_2049_characters_is_an_error_showing_its_start() -> None:
    shown = "'https://img.example.com/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'"
    assert issues(f"{HEADER}\n1,SKU1,{LONG_URL}\n") == [(2, URLS, f"image URL {shown} is longer than 2048 characters")]


@pytest.mark.parametrize(
    ("cell", "urls"),
    [
        (f"{A}", (A,)),
        (f" {A} , {B} ", (A, B)),
        (f"{A},{B},", (A, B)),
        (f"{A},,{B}", (A, B)),
        (f"{A},{A}", (A, A)),
        (f"{B},{A}", (B, A)),
        ("HTTPS://IMG.EXAMPLE.COM/A.JPG", ("HTTPS://IMG.EXAMPLE.COM/A.JPG",)),
        ("http://127.0.0.1:8080/a.jpg?size=large#top", ("http://127.0.0.1:8080/a.jpg?size=large#top",)),
        ("https://例え.jp/画像.jpg", ("https://例え.jp/画像.jpg",)),
        ("https://img.example.com/" + "a" * 2024, ("https://img.example.com/" + "a" * 2024,)),
    ],
)
def test_image_urls_are_kept_as_given_in_order(cell: str, urls: tuple[str, ...]) -> None:
    assert read(f'{HEADER}\n1,SKU1,"{cell}"\n') == [ProductRow(1, "SKU1", urls, 2)]


@pytest.mark.parametrize("cell", ["", "  ", ",", " , ,"])
def test_a_url_cell_without_any_url_is_an_error(cell: str) -> None:
    assert issues(f'{HEADER}\n1,SKU1,"{cell}"\n') == [
        (2, URLS, "no image URL; give one or more http or https URLs separated by commas")
    ]


def test_a_row_without_its_url_cell_is_an_error() -> None:
    assert issues(f"{HEADER}\n1,SKU1\n") == [
        (2, URLS, "no image URL; give one or more http or https URLs separated by commas")
    ]


def test_the_url_length_limit_comes_from_the_limits() -> None:
    assert issues(f"{HEADER}\n1,SKU1,{A}\n", changed(DEFAULT_LIMITS, max_url_length=20)) == [
        (2, URLS, f"image URL {A!r} is longer than 20 characters")
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("https://hooks.example.com/done", None),
        ("http://localhost:9000/", None),
        ("mailto:ops@example.com", "is not an absolute http or https URL"),
        ("hooks.example.com/done", "is not an absolute http or https URL"),
        (" https://hooks.example.com/", "contains a space or control character"),
        ("https://hooks.example.com/\x00", "contains a space or control character"),
        ("https://hooks.example.com/\x7f", "contains a space or control character"),
        ("https://hooks.example.com/" + "a" * 100, "is longer than 100 characters"),
    ],
)
def test_url_problem_says_what_keeps_a_value_from_being_an_http_url(value: str, problem: str | None) -> None:
    assert url_problem(value, max_length=100) == problem


# Unquoted URLs that spill into cells after the last header column.


def test_unquoted_urls_after_the_url_column_are_more_urls_of_the_product() -> None:
    content = f"{HEADER}\n1,SKU1,{A},{B}, {C} ,\n2,SKU2,{C}\n"
    assert read(content) == [ProductRow(1, "SKU1", (A, B, C), 2), ProductRow(2, "SKU2", (C,), 3)]


def test_a_spilled_cell_that_is_not_a_url_is_an_error_on_its_line() -> None:
    content = f"{HEADER}\n1,SKU1,{A}\n2,SKU2,{B},blue\n"
    assert issues(content) == [(3, URLS, "image URL 'blue' is not an absolute http or https URL")]


def test_extra_cells_are_an_error_when_the_url_column_is_not_last() -> None:
    content = f"Input Image Urls,S. No.,Product Name\n{A},1,SKU1,{B}\n{A},2,SKU2,,\n"
    assert issues(content) == [(2, None, "the row has 4 cells but the header has 3; quote cells that contain commas")]


# Line numbers, blank lines and multi-line cells.


def test_a_multi_line_quoted_cell_keeps_later_line_numbers_physical() -> None:
    content = f'{HEADER}\n1,"Big\nSKU","{A},\n{B}"\n2,SKU2,{C}\n3,,{C}\n'
    assert issues(content) == [(6, NAME, "product name is empty")]
    assert read(content.replace("3,,", "3,SKU3,")) == [
        ProductRow(1, "Big\nSKU", (A, B), 2),
        ProductRow(2, "SKU2", (C,), 5),
        ProductRow(3, "SKU3", (C,), 6),
    ]


def test_blank_lines_are_skipped_and_still_counted() -> None:
    content = f"\n{HEADER}\r\n\r\n1,SKU1,{A}\n  \n,,\n , , \n2,SKU2,{C}\n\n"
    assert read(content) == [ProductRow(1, "SKU1", (A,), 4), ProductRow(2, "SKU2", (C,), 8)]


def test_lone_carriage_returns_end_lines_too() -> None:
    assert read(f"{HEADER}\r1,SKU1,{A}\r2,SKU2,{C}\r") == [
        ProductRow(1, "SKU1", (A,), 2),
        ProductRow(2, "SKU2", (C,), 3),
    ]


# Files that are not a product CSV at all.


@pytest.mark.parametrize("content", ["", "\n\n", " , ,\r\n", "\ufeff"])
def test_an_empty_file_is_an_error(content: str) -> None:
    error = rejection(content)
    message = f"the file is empty; it needs the header row {HEADER} and one row per product"
    assert error.errors == [CsvIssue(1, None, message)]
    assert error.detail == message


@pytest.mark.parametrize("content", [f"{HEADER}\n", f"{HEADER}", f"{HEADER}\n\n ,,\n"])
def test_a_header_without_product_rows_is_an_error(content: str) -> None:
    assert issues(content) == [(1, None, "the CSV has a header row but no product rows")]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(f"{HEADER}\n1,SKU1,{A}\n2,Caf\xe9,{B}\n".encode("latin-1"), 3, id="latin-1"),
        pytest.param(b"\xff\xfe" + SAMPLE.encode("utf-16-le"), 1, id="utf-16 with BOM"),
        pytest.param(SAMPLE.encode() + b"3,SKU3,https://img.example.com/\xe2\x82", 4, id="cut character"),
        pytest.param(product_rows(2000).encode() + b"2001,\x80,x\n", 2002, id="past the first read buffer"),
    ],
)
def test_a_file_that_is_not_utf8_is_an_error_on_the_first_bad_line(data: bytes, line: int) -> None:
    message = f"the file is not UTF-8 text (invalid bytes on line {line}); save it as CSV UTF-8"
    error = rejection(data)
    assert error.errors == [CsvIssue(line, None, message)]
    assert error.detail == message


@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(f"{HEADER}\n1,SKU\x001,{A}\n".encode(), 2, id="NUL in a name"),
        pytest.param(f"{HEADER}\n1,SKU1,{A}\n\x00\n".encode(), 3, id="NUL alone on a line"),
        pytest.param(SAMPLE.encode("utf-16-le"), 1, id="utf-16 without BOM"),
    ],
)
def test_a_nul_character_is_an_error(data: bytes, line: int) -> None:
    assert issues(data) == [(line, None, NUL_MESSAGE)]


@pytest.mark.parametrize(
    ("content", "issue"),
    [
        (
            f'{HEADER}\n1,SKU1,{A}\n2,"SKU2,{B}\n3,SKU3,{C}\n',
            (3, None, QUOTE_NEVER_CLOSED),
        ),
        (
            f'{HEADER}\n1,"SKU"1,{A}\n',
            (2, None, TEXT_AFTER_QUOTE),
        ),
        (
            f'{HEADER}\n1,SKU1,{A}\n2,SKU2,"{"x" * (MAX_CELL_CHARS + 1)}"\n',
            (3, None, f"a cell is longer than {MAX_CELL_CHARS} characters"),
        ),
    ],
)
def test_a_row_the_csv_module_cannot_read_is_an_error_on_its_first_line(
    content: str, issue: tuple[int, None, str]
) -> None:
    assert issues(content) == [issue]


# Reporting every error at once.


def test_every_error_is_reported_at_once_with_its_line_and_column() -> None:
    content = f'{HEADER}\n1,SKU1,{A}\nx,,ftp://a.jpg\n\n1,SKU3,{B}\n4,"Long\nname",{C},not a url\n5,SKU5,\n6,SKU6,{A}\n'
    error = rejection(content)
    assert error.detail == "the CSV has 6 errors"
    assert [(issue.line, issue.column, issue.message) for issue in error.errors] == [
        (3, SERIAL, "serial number must be a positive integer, got 'x'"),
        (3, NAME, "product name is empty"),
        (3, URLS, "image URL 'ftp://a.jpg' is not an absolute http or https URL"),
        (5, SERIAL, "serial number 1 already used on line 2"),
        (6, URLS, "image URL 'not a url' contains a space or control character"),
        (8, URLS, "no image URL; give one or more http or https URLs separated by commas"),
    ]


def test_a_row_the_csv_module_cannot_read_ends_the_report_after_earlier_errors() -> None:
    content = f'{HEADER}\n0,SKU1,{A}\n2,"SKU"2,{B}\n-3,SKU3,{C}\n'
    assert issues(content) == [
        (2, SERIAL, "serial number must be a positive integer, got '0'"),
        (3, None, TEXT_AFTER_QUOTE),
    ]


def test_reading_stops_once_the_reportable_number_of_errors_is_found() -> None:
    content = HEADER + "\n" + "".join(f"{n},,{A}\n" for n in range(1, 11))
    error = rejection(followed_by_bytes_never_read(content), changed(DEFAULT_LIMITS, max_reported_errors=5))
    assert [(issue.line, issue.column) for issue in error.errors] == [(line, NAME) for line in range(2, 7)]
    assert error.detail == "the CSV has more errors than can be listed; here are the first 5"


def test_the_default_report_holds_100_errors() -> None:
    content = HEADER + "\n" + "".join(f"{n},,{A}\n" for n in range(1, 201))
    assert len(rejection(content).errors) == 100


def test_a_single_row_error_is_summarised_by_count() -> None:
    assert rejection(f"{HEADER}\n0,SKU1,{A}\n").detail == "the CSV has 1 error"


# Upload size limits (413).


@pytest.mark.parametrize(("limit", "rows"), [(1, 1), (3, 3), (3, 2)])
def test_up_to_the_product_limit_is_accepted(limit: int, rows: int) -> None:
    assert len(read(product_rows(rows), changed(DEFAULT_LIMITS, max_products=limit))) == rows


def test_one_product_over_the_limit_is_too_many_and_stops_reading_at_once() -> None:
    with pytest.raises(TooManyProducts) as raised:
        read(followed_by_bytes_never_read(product_rows(4)), changed(DEFAULT_LIMITS, max_products=3))
    assert raised.value.detail == "the CSV has more than 3 products; send at most 3 per request"
    assert isinstance(raised.value, UploadTooLarge)


def test_invalid_rows_count_towards_the_product_limit() -> None:
    with pytest.raises(TooManyProducts):
        read(f"{HEADER}\n1,SKU1,{A}\n0,,\n", changed(DEFAULT_LIMITS, max_products=1))


def test_the_default_product_limit_is_10000() -> None:
    assert len(read(product_rows(10_000))) == 10_000
    with pytest.raises(TooManyProducts):
        read(product_rows(10_001))


@pytest.mark.parametrize(("rows", "urls_per_row"), [(1, 4), (2, 2), (4, 1)])
def test_up_to_the_image_limit_is_accepted(rows: int, urls_per_row: int) -> None:
    assert len(read(product_rows(rows, urls_per_row), changed(DEFAULT_LIMITS, max_images_per_request=4))) == rows


@pytest.mark.parametrize(("rows", "urls_per_row"), [(1, 5), (5, 1), (2, 3)])
def test_one_image_over_the_limit_is_too_many(rows: int, urls_per_row: int) -> None:
    with pytest.raises(TooManyImages) as raised:
        read(product_rows(rows, urls_per_row), changed(DEFAULT_LIMITS, max_images_per_request=4))
    assert raised.value.detail == "the CSV has more than 4 image URLs; send at most 4 per request"


def test_spilled_urls_count_towards_the_image_limit() -> None:
    with pytest.raises(TooManyImages):
        read(f"{HEADER}\n1,SKU1,{A},{B},{C}\n", changed(DEFAULT_LIMITS, max_images_per_request=2))


def test_up_to_the_per_product_image_limit_is_accepted() -> None:
    assert len(read(product_rows(2, 100))) == 2


def test_a_product_over_the_per_product_image_limit_is_a_row_error_naming_its_line() -> None:
    content = product_rows(1, 100) + f'2,SKU2,"{",".join([A] * 150)}"\n3,SKU3,{A},{B},{C}\n'
    assert issues(content) == [(3, URLS, "the product has 150 image URLs; the limit is 100 per product")]
    assert issues(content, changed(DEFAULT_LIMITS, max_images_per_product=2)) == [
        (2, URLS, "the product has 100 image URLs; the limit is 2 per product"),
        (3, URLS, "the product has 150 image URLs; the limit is 2 per product"),
        (4, URLS, "the product has 3 image URLs; the limit is 2 per product"),
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("ftp://user:hunter2@img.example.com/a.jpg", "ftp://user:***@img.example.com/a.jpg"),
        ("https://user:hunter2@img.example.com:99999/a.jpg", "https://user:***@img.example.com:99999/a.jpg"),
        ("https://hunter2@img.example.com/a b.jpg", "https://***@img.example.com/a b.jpg"),
    ],
)
def test_an_error_quoting_an_image_url_never_shows_its_password(url: str, shown: str) -> None:
    ((_, _, message),) = issues(f'{HEADER}\n1,SKU1,"{url}"\n')
    assert "hunter2" not in message
    assert message.startswith(f"image URL {shown!r}")


# Properties.

SMALL_LIMITS = changed(DEFAULT_LIMITS, max_products=50, max_images_per_request=100, max_reported_errors=20)
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
LIKELY_CELLS = [A, f"{A},{B}", "1", "2", SERIAL, NAME, URLS, "", " "]


def csv_bytes(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode()


def read_or_reject(data: bytes, limits: UploadLimits = SMALL_LIMITS) -> None:
    with contextlib.suppress(CsvValidationError, UploadTooLarge):
        read(data, limits)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda tail: SAMPLE.encode() + tail, st.binary(max_size=100)))
def test_any_bytes_are_read_or_rejected_cleanly(data: bytes) -> None:
    read_or_reject(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ANY_TEXT | st.sampled_from(LIKELY_CELLS), max_size=5), max_size=8))
def test_any_text_cells_are_read_or_rejected_cleanly(rows: list[list[str]]) -> None:
    read_or_reject(csv_bytes([[SERIAL, NAME, URLS], *rows]))


HOST_LABEL = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), min_size=1, max_size=20)
URL_PATH = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_.~%/?=&#"), max_size=40)
VALID_URL = st.builds(
    "{}://{}.example.com/{}".format, st.sampled_from(["http", "https", "HTTPS"]), HOST_LABEL, URL_PATH
)
PRODUCT_NAME = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=255)
    .map(str.strip)
    .filter(bool)
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 2**63 - 1),
            PRODUCT_NAME,
            st.lists(VALID_URL, min_size=1, max_size=5).map(tuple),
        ),
        min_size=1,
        max_size=20,
        unique_by=lambda product: product[0],
    )
)
def test_valid_products_written_by_csv_writer_are_read_back_exactly(
    products: list[tuple[int, str, tuple[str, ...]]],
) -> None:
    rows = [[SERIAL, NAME, URLS]] + [[str(serial), name, ",".join(urls)] for serial, name, urls in products]
    expected = [ProductRow(serial, name, urls, line) for line, (serial, name, urls) in enumerate(products, start=2)]
    assert read(csv_bytes(rows)) == expected
