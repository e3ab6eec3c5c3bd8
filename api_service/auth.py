"""API keys: who is calling, and whose requests they may see.

When `API_KEYS` is set, every /api route needs `Authorization: Bearer KEY` or `X-API-Key: KEY`
(a 401 with `WWW-Authenticate: Bearer` otherwise). A caller is known by the SHA-256 of its key,
its *owner digest*: it is stored in each request document the caller creates (`owner`), scopes
its Idempotency-Keys, and keys its rate limits. The key itself is never stored nor logged.

Routes take `owner: Owner` (the digest, or None while keys are off) and read or change a request
only through `repository.request_filter(request_id, owner)`, so another key's request is a plain
`404 request not found`, exactly like an id that does not exist.
"""

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

bearer_scheme = HTTPBearer(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="`Authorization: Bearer KEY`, a key from `API_KEYS` (needed only when `API_KEYS` is set)",
)
api_key_scheme = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="APIKeyHeader",
    description="`X-API-Key: KEY`, the same keys as the bearer token",
)

MISSING = "an API key is required: send Authorization: Bearer KEY or X-API-Key: KEY"
INVALID = "invalid API key"


def owner_digest(key: str) -> str:
    """How a key is known in documents and rate-limit counters: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys:
    """The configured keys, compared in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = [key.encode() for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def owner_of(self, presented: str) -> str | None:
        """The owner digest of `presented` if it is one of the keys, else None.

        Every configured key is compared, whatever matched, so the time taken says nothing
        about which key (or how much of one) was right.
        """
        candidate = presented.encode("utf-8", "surrogateescape")
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(candidate, key)
        return owner_digest(presented) if matched else None


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def api_keys_of(request: Request) -> ApiKeys:
    # create_app sets it; Starlette types app.state as Any.
    keys: ApiKeys = request.app.state.api_keys
    return keys


async def caller_owner(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
    api_key: Annotated[str | None, Security(api_key_scheme)],
) -> str | None:
    """The caller's owner digest; None while `API_KEYS` is unset; a 401 without a valid key.

    FastAPI runs it once per request however many dependencies ask for it.
    """
    keys = api_keys_of(request)
    if not keys.enabled:
        return None
    presented = bearer.credentials if bearer is not None else api_key
    if not presented:
        raise unauthorized(MISSING)
    owner = keys.owner_of(presented)
    if owner is None:
        raise unauthorized(INVALID)
    return owner


# The caller's owner digest (None while keys are off): a route parameter `owner: Owner`.
Owner = Annotated[str | None, Depends(caller_owner)]


def scoped_idempotency_key(key: str, owner: str | None) -> str:
    """The Idempotency-Key as stored: scoped to its owner, so two clients never share one."""
    return f"{owner}:{key}" if owner is not None else key
