"""The storage interface: what the worker writes and what `/media` serves, whatever the backend.

Tasks only `put` bytes under a key and ask for its `public_url`; the API asks where a
key's object can be read (`locate`): a file on this machine, served as it is, or a URL
elsewhere to redirect to. So another backend (S3 or any object store) fits without
touching either service.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from shared.errors import ServiceError

# A key's image changes only when a retried product writes it again, with the same content.
CACHE_CONTROL = "public, max-age=86400"


@dataclass(frozen=True, slots=True)
class LocalFile:
    """The object is a finished file on this machine."""

    path: Path
    content_type: str


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """The object is read from another server, at this (possibly short-lived) URL."""

    url: str


class MissingObject(Exception):
    """The object to copy is not there (its request was deleted)."""


class StorageUnavailable(ServiceError):
    """The store refuses writes: a full or read-only disk, an S3 store that does not answer or answers
    5xx. The service's fault, not the image's: the image waits and is tried again (storage_waits)."""

    retryable = True

    def __init__(self, detail: str) -> None:
        super().__init__("storage unavailable", detail=detail)


# The Redis key where a worker says that storage refused a write (worker_service/storage_waits.py),
# so that /readyz on any host reports it (api_service/storage_probe.py).
REFUSING_KEY = "storage:refusing"


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing what was there: writing the same key twice is safe."""

    def copy(self, source_key: str, key: str) -> None:
        """Store under `key` what is stored under `source_key`, byte for byte, with its content
        type, without reading it through this process; `MissingObject` if there is none."""

    def delete(self, keys: list[str]) -> None:
        """Delete these objects; one that is not there is no error."""

    def delete_request(self, request_id: str) -> None:
        """Delete every object stored under the request's keys (`{request_id}/…`)."""

    def probe(self) -> None:
        """Write a small object and remove it: `StorageUnavailable` while the store refuses writes."""

    def public_url(self, key: str) -> str:
        """The absolute URL a client downloads the object from."""

    def locate(self, key: str) -> LocalFile | Elsewhere | None:
        """Where the object stored under `key` can be read; None for any key that names none."""


def image_key(request_id: str, serial_number: int, position: int, extension: str) -> str:
    """Fixed by request, product and position, so a retried task overwrites instead of duplicating."""
    return f"{request_id}/{serial_number}-{position}.{extension}"
