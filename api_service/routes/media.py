"""GET /media/{key}: locally stored output images, confined to the media folder."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from api_service.errors import ApiError
from api_service.schemas import error_responses
from api_service.state import AppState, services
from shared.storage.local import KeyOutsideStorage

router = APIRouter()


@router.get("/media/{key:path}", response_class=FileResponse, responses=error_responses(404),
            summary="An output image", tags=["media"])
async def media(key: str, state: Annotated[AppState, Depends(services)]) -> FileResponse:
    try:
        path = state.storage.path_of(key)
    except KeyOutsideStorage as error:
        raise ApiError(404, "not found") from error
    # Names starting with a dot are files still being written.
    if path.name.startswith(".") or not path.is_file():
        raise ApiError(404, "not found")
    return FileResponse(path, media_type=state.storage.content_type_of(path),
                        headers={"Cache-Control": "public, max-age=86400"})
