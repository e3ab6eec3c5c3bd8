"""Where output images are kept, behind a small interface.

Tasks only `put` bytes under a key and ask for its `public_url`, so another backend
(S3 or any object store) fits without touching them.
"""

from typing import Protocol

from shared.settings import Settings
from shared.storage.local import LocalStorage


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key`, replacing what was there: writing the same key twice is safe."""

    def public_url(self, key: str) -> str:
        """The absolute URL a client downloads the object from."""


def image_key(request_id: str, serial_number: int, position: int, extension: str) -> str:
    """Fixed by request, product and position, so a retried task overwrites instead of duplicating."""
    return f"{request_id}/{serial_number}-{position}.{extension}"


def storage_from_settings(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.media_dir, f"{settings.base_url}/media")


__all__ = ["LocalStorage", "Storage", "image_key", "storage_from_settings"]
