"""GET /media/{key}: stored output images, served from this machine or redirected to where they are."""

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse, RedirectResponse, Response

from api_service.errors import ApiError
from api_service.schemas import error_responses
from api_service.state import AppState, services
from shared.storage.base import CACHE_CONTROL, Elsewhere, LocalFile

router = APIRouter()


@router.get(
    "/media/{key:path}",
    response_class=FileResponse,
    responses=error_responses(404),
    summary="An output image",
    tags=["media"],
)
async def media(key: str, state: Annotated[AppState, Depends(services)]) -> Response:
    match state.storage.locate(key):
        case LocalFile(path, content_type):
            return FileResponse(path, media_type=content_type, headers={"Cache-Control": CACHE_CONTROL})
        case Elsewhere(url):
            return RedirectResponse(url, status_code=307)
        case None:
            raise ApiError(404, "not found")
