"""Where output images are kept, behind a small interface (`base.Storage`)."""

from shared.settings import Settings
from shared.storage.base import Elsewhere, LocalFile, Storage, image_key
from shared.storage.local import LocalStorage


def storage_from_settings(settings: Settings) -> Storage:
    return LocalStorage(settings.media_dir, f"{settings.base_url}/media")


__all__ = ["Elsewhere", "LocalFile", "LocalStorage", "Storage", "image_key", "storage_from_settings"]
