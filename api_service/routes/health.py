"""GET /healthz (the process runs) and GET /readyz (MongoDB and Redis answer, storage accepts writes)."""

import asyncio
from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

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


READY_EXAMPLE = {"status": "ready", "mongodb": "ok", "redis": "ok", "storage": "ok"}
NOT_READY_EXAMPLE = {
    "status": "not ready",
    "detail": "storage refusing writes",
    "mongodb": "ok",
    "redis": "ok",
    "storage": "refusing writes",
}


@router.get(
    "/readyz",
    summary="MongoDB and Redis answer, and storage accepts writes",
    responses={
        200: {"content": {"application/json": {"example": READY_EXAMPLE}}},
        503: {
            "description": "MongoDB or Redis does not answer, or storage refuses writes",
            "content": {"application/json": {"example": NOT_READY_EXAMPLE}},
        },
    },
)
async def readyz(state: Annotated[AppState, Depends(services)]) -> JSONResponse:
    mongodb, redis, writable = await asyncio.gather(
        answers(state.mongo.admin.command("ping")), answers(state.redis.ping()), state.storage_probe.writable()
    )
    checks = {
        "mongodb": "ok" if mongodb else "unavailable",
        "redis": "ok" if redis else "unavailable",
        "storage": "ok" if writable else "refusing writes",
    }
    if mongodb and redis and writable:
        return JSONResponse({"status": "ready", **checks})
    problems = [f"{name} not answering" for name in ("mongodb", "redis") if checks[name] != "ok"]
    problems += [] if writable else ["storage refusing writes"]
    return JSONResponse({"status": "not ready", "detail": "; ".join(problems), **checks}, status_code=503)
