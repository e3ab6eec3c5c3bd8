"""Reading a multipart upload without ever holding an unbounded body.

The body is counted while it streams in and refused as soon as it passes the cap;
the file part is spooled to a temporary file (on disk past 1 MiB) by Starlette's
multipart parser, never kept whole in memory.
"""

import hashlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import IO

from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from shared.errors import ServiceError

# Room for the multipart framing and the small text fields around the file.
FRAMING_ALLOWANCE = 64 * 1024
MAX_FIELD_BYTES = 8 * 1024
HASH_CHUNK = 1024 * 1024


class BodyTooLarge(ServiceError):
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than the {limit // (1024 * 1024)} MiB limit")
        self.limit = limit


class MalformedUpload(ServiceError):
    """Not a multipart form carrying a `file`."""

    http_status = 400


@dataclass
class Upload:
    file: IO[bytes]
    size: int
    sha256: str
    webhook_url: str | None
    refresh: bool = False


async def capped(stream: AsyncIterator[bytes], cap: int, limit: int) -> AsyncGenerator[bytes, None]:
    received = 0
    async for chunk in stream:
        received += len(chunk)
        if received > cap:
            raise BodyTooLarge(limit)
        yield chunk


def sha256_of(file: IO[bytes]) -> str:
    digest = hashlib.sha256()
    file.seek(0)
    while chunk := file.read(HASH_CHUNK):
        digest.update(chunk)
    file.seek(0)
    return digest.hexdigest()


TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def text_field(value: object, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedUpload(f"{name} must be a text field, not a file")
    return value.strip() or None


def boolean_field(value: object, name: str) -> bool:
    """A form's yes or no: true/false (1/0, yes/no, on/off, any case); absent or empty is false."""
    text = (text_field(value, name) or "false").lower()
    if text not in TRUE_WORDS | FALSE_WORDS:
        raise MalformedUpload(f"{name} must be true or false")
    return text in TRUE_WORDS


async def read_upload(request: Request, max_file_bytes: int) -> Upload:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise MalformedUpload("expected a multipart/form-data body with a `file` field")
    cap = max_file_bytes + FRAMING_ALLOWANCE
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise BodyTooLarge(max_file_bytes)

    parser = MultiPartParser(
        request.headers,
        capped(request.stream(), cap, max_file_bytes),
        max_files=1,
        max_fields=8,
        max_part_size=MAX_FIELD_BYTES,
    )
    try:
        form = await parser.parse()
    except MultiPartException as error:
        raise MalformedUpload(f"malformed multipart body: {error}") from error

    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise MalformedUpload("the form has no `file` field with the CSV")
    size = file.size or 0
    if size > max_file_bytes:
        await file.close()
        raise BodyTooLarge(max_file_bytes)
    return Upload(
        file=file.file,
        size=size,
        sha256=sha256_of(file.file),
        webhook_url=text_field(form.get("webhook_url"), "webhook_url"),
        refresh=boolean_field(form.get("refresh"), "refresh"),
    )
