"""GET /media/{key}: locally stored output images, confined to the media folder."""

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from api_service.errors import ApiError
from api_service.schemas import error_responses
from api_service.state import AppState, services
from shared.storage.local import KeyOutsideStorage, LocalStorage

router = APIRouter()


def stored_file(storage: LocalStorage, key: str) -> Path | None:
    """The finished file stored under `key`, or None for any key that names none."""
    try:
        path = storage.path_of(key)
        # Names starting with a dot are files still being written.
        return path if not path.name.startswith(".") and path.is_file() else None
    except (KeyOutsideStorage, OSError):  # OSError: a name longer than the file system allows
        return None


@router.get(
    "/media/{key:path}",
    response_class=FileResponse,
    responses=error_responses(404),
    summary="An output image",
    tags=["media"],
)
async def media(key: str, state: Annotated[AppState, Depends(services)]) -> FileResponse:
    path = stored_file(state.storage, key)
    if path is None:
        raise ApiError(404, "not found")
    return FileResponse(
        path, media_type=state.storage.content_type_of(path), headers={"Cache-Control": "public, max-age=86400"}
    )
