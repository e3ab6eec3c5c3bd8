"""GET /healthz (the process runs) and GET /readyz (MongoDB and Redis answer)."""

import asyncio
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api_service.schemas import error_responses
from api_service.state import AppState, services

router = APIRouter(tags=["health"])
PING_TIMEOUT_SECONDS = 2.0


@router.get(
    "/healthz",
    summary="The API process is running",
    responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def answers(ping: Awaitable[object]) -> bool:
    try:
        await asyncio.wait_for(ping, PING_TIMEOUT_SECONDS)
        return True
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return False


@router.get(
    "/readyz",
    summary="MongoDB and Redis answer",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ready", "mongodb": "ok", "redis": "ok"}}}},
        **error_responses(503),
    },
)
async def readyz(state: Annotated[AppState, Depends(services)]) -> JSONResponse:
    mongodb, redis = await asyncio.gather(answers(state.mongo.admin.command("ping")), answers(state.redis.ping()))
    checks = {"mongodb": "ok" if mongodb else "unavailable", "redis": "ok" if redis else "unavailable"}
    if mongodb and redis:
        return JSONResponse({"status": "ready", **checks})
    down = " and ".join(name for name, value in checks.items() if value != "ok")
    return JSONResponse({"detail": f"{down} not answering", **checks}, status_code=503)
