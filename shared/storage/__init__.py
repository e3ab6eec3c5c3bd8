"""Where output images are kept, behind a small interface (`base.Storage`)."""

from shared.settings import Settings
from shared.storage.base import (
    REFUSING_KEY,
    Elsewhere,
    LocalFile,
    MissingObject,
    Storage,
    StorageUnavailable,
    image_key,
)
from shared.storage.local import LocalStorage
from shared.storage.s3 import S3Storage


def storage_from_settings(settings: Settings) -> Storage:
    # Whatever the backend, images are handed out under MEDIA_BASE_URL (a CDN, a public
    # bucket) when it is set, else under the API's /media route.
    public_base_url = settings.storage.media_base_url or f"{settings.base_url}/media"
    if settings.storage.backend == "s3":
        return S3Storage.from_settings(settings.storage, public_base_url)
    return LocalStorage(settings.service.media_dir, public_base_url)


__all__ = [
    "REFUSING_KEY",
    "Elsewhere",
    "LocalFile",
    "LocalStorage",
    "MissingObject",
    "S3Storage",
    "Storage",
    "StorageUnavailable",
    "image_key",
    "storage_from_settings",
]
