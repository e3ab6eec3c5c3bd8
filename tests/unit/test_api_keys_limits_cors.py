"""Who may call the API, how often, and from which browser origins, in process.

API keys (api_service/auth.py), rate limits (api_service/rate_limits.py, here on the `limits`
package's memory storage instead of Redis) and CORS (api_service/cors.py). The application runs
with FastAPI's TestClient against servers that are not there; the store queries a route makes
are replaced where a test needs them to answer.
"""

import hashlib
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from api_service.auth import ApiKeys, owner_digest, scoped_idempotency_key
from api_service.main import create_app
from api_service.rate_limits import limits_storage_uri
from shared.models import utcnow
from shared.settings import Settings
from shared.store import requests
from shared.store.operations import Program
from shared.store.requests import new_request

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there
KEY_A, KEY_B = "key-a-0123456789", "key-b-9876543210"
ALLOWED_ORIGIN = "https://shop.example.com"
OPEN_PATHS = ("/healthz", "/readyz", "/metrics", "/media/", "/docs", "/redoc", "/openapi.json")


def settings(tmp_path: Path, **values) -> Settings:
    return Settings.load(
        mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0", data_dir=tmp_path, **values
    )


@contextmanager
def client_for(configured: Settings, *, memory_limiter: bool = False) -> Iterator[TestClient]:
    app = create_app(configured)
    if memory_limiter:
        # The same limiter as in production, on memory instead of Redis.
        app.state.rate_limits.limiter = MovingWindowRateLimiter(MemoryStorage())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(settings(tmp_path, api_keys=f"{KEY_A}, {KEY_B}", cors_origins=ALLOWED_ORIGIN)) as test_client:
        yield test_client


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(settings(tmp_path)) as test_client:
        yield test_client


@pytest.fixture
def pages(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The owners the status route asked the store for; every request id is unknown."""
    asked: list[str | None] = []

    def no_such_request() -> Program[None]:
        return None
        yield  # a program that answers at once, asking the database nothing

    def find_page(request_id, owner, offset, limit):
        asked.append(owner)
        return no_such_request()

    monkeypatch.setattr(requests, "find_page", find_page)
    return asked


def assert_401(response, detail_part: str) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"
    assert detail_part in response.json()["detail"]


# --- keys ---------------------------------------------------------------------------------


def test_without_a_key_an_api_route_is_a_401(client, pages):
    assert_401(client.get("/api/v1/status/some-id"), "API key is required")
    assert pages == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": "wrong"},
        {"Authorization": f"Bearer {KEY_A}x"},
        {"X-API-Key": KEY_A[:-1]},
        {"Authorization": f"Basic {KEY_A}"},
    ],
)
def test_a_wrong_key_is_a_401(client, pages, headers):
    response = client.get("/api/v1/status/some-id", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert pages == []


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY_B}"}, {"X-API-Key": KEY_B}])
def test_either_header_form_is_accepted_and_known_by_its_digest(client, pages, headers):
    response = client.get("/api/v1/status/some-id", headers=headers)
    assert response.status_code == 404
    assert response.json() == {"detail": "request not found"}
    assert pages == [hashlib.sha256(KEY_B.encode()).hexdigest()]


def test_without_api_keys_no_key_is_needed_and_nothing_is_filtered(keyless, pages):
    assert keyless.get("/api/v1/status/some-id").status_code == 404
    assert pages == [None]


def every_route(routes):
    """The application's routes, those of included routers too (FastAPI keeps those nested)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from every_route(included.routes) if included is not None else [route]


def guarded_routes(app) -> list[tuple[str, str]]:
    routes = []
    for route in every_route(app.routes):
        if isinstance(route, APIRoute) and not route.path.startswith(OPEN_PATHS) and route.path != "/":
            path = route.path.replace("{request_id}", "some-id")
            routes.extend((method, path) for method in sorted(route.methods))
    return routes


def test_every_api_route_and_alias_needs_a_key(client):
    routes = guarded_routes(client.app)
    paths = {path for _, path in routes}
    # The versioned routes, the hidden /api aliases and the design documents' aliases.
    assert {"/api/v1/upload", "/api/upload", "/upload", "/upload/", "/api/v1/webhook", "/api/webhook"} <= paths
    assert {"/api/v1/status/some-id", "/api/status/some-id", "/status/some-id", "/status/some-id/"} <= paths
    assert {"/api/v1/download/some-id", "/output_csv/some-id", "/export/some-id/"} <= paths
    for method, path in routes:
        assert_401(client.request(method, path), "API key is required")
        assert_401(client.request(method, path, headers={"X-API-Key": "wrong"}), "invalid API key")


@pytest.mark.parametrize("path", ["/healthz", "/docs", "/redoc", "/openapi.json", "/media/r/1-0.jpg", "/"])
def test_open_routes_need_no_key(client, path):
    response = client.get(path)
    assert response.status_code != 401
    assert response.status_code in (200, 404)


def test_readyz_needs_no_key(client):
    assert client.get("/readyz").status_code == 503  # no servers here, but no 401


def test_the_schema_declares_both_key_schemes(client):
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["HTTPBearer"]["description"],
    }
    assert schemes["APIKeyHeader"]["type"] == "apiKey"
    assert schemes["APIKeyHeader"]["in"] == "header"
    assert schemes["APIKeyHeader"]["name"] == "X-API-Key"
    for path, method in [("/api/v1/upload", "post"), ("/api/v1/status/{request_id}", "get")]:
        operation = schema["paths"][path][method]
        # Either scheme: two alternatives.
        assert {"HTTPBearer": []} in operation["security"]
        assert {"APIKeyHeader": []} in operation["security"]
        assert {"401", "429"} <= set(operation["responses"])
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_a_key_is_never_logged(client, pages, caplog):
    caplog.set_level(logging.DEBUG)
    client.get("/api/v1/status/some-id", headers={"Authorization": f"Bearer {KEY_A}"})
    client.get("/api/v1/status/some-id", headers={"X-API-Key": f"{KEY_B}-wrong"})
    assert KEY_A not in caplog.text
    assert KEY_B not in caplog.text


def test_keys_are_compared_whole():
    keys = ApiKeys(["secret-key", "other"])
    assert keys.owner_of("secret-key") == owner_digest("secret-key")
    for wrong in ("secret-ke", "secret-key ", "", "SECRET-KEY", "é"):
        assert keys.owner_of(wrong) is None


def test_the_owner_is_stored_as_a_digest_and_the_idempotency_key_is_scoped():
    digest = owner_digest(KEY_A)
    document = new_request(
        "r1",
        [],
        now=utcnow(),
        webhook_url=None,
        idempotency_key=scoped_idempotency_key("k1", digest),
        file_sha256="0",
        owner=digest,
    )
    assert document["owner"] == digest and KEY_A not in str(document)
    assert document["idempotency_key"] == f"{digest}:k1"
    assert scoped_idempotency_key("k1", owner_digest(KEY_B)) != document["idempotency_key"]
    assert scoped_idempotency_key("k1", None) == "k1"
    assert "owner" not in new_request("r2", [], now=utcnow(), webhook_url=None, idempotency_key=None, file_sha256="0")


def test_the_store_filter_names_the_owner():
    assert requests.visible("r1", None) == {"_id": "r1", "deleted_at": {"$exists": False}}
    assert requests.visible("r1", "d") == {"_id": "r1", "owner": "d", "deleted_at": {"$exists": False}}


# --- rate limits --------------------------------------------------------------------------


def limited_client(tmp_path: Path, **values):
    return client_for(settings(tmp_path, api_keys=f"{KEY_A},{KEY_B}", **values), memory_limiter=True)


def test_past_the_request_limit_a_429_with_retry_after_per_key(tmp_path, pages):
    with limited_client(tmp_path, rate_limit_requests_per_minute=3) as client:
        for _ in range(3):
            assert client.get("/api/v1/status/x", headers={"X-API-Key": KEY_A}).status_code == 404
        response = client.get("/api/v1/status/x", headers={"X-API-Key": KEY_A})
        assert response.status_code == 429
        assert response.json()["detail"] == "rate limit of 3 requests a minute reached; retry in 60 s"
        assert 1 <= int(response.headers["retry-after"]) <= 60
        # Another key has its own count; open routes are not counted.
        assert client.get("/api/v1/status/x", headers={"X-API-Key": KEY_B}).status_code == 404
        assert client.get("/healthz").status_code == 200


def test_past_the_upload_limit_a_429_for_uploads_only(tmp_path, pages):
    with limited_client(tmp_path, rate_limit_uploads_per_minute=1) as client:
        first = client.post("/api/v1/upload", headers={"X-API-Key": KEY_A})
        assert first.status_code == 400  # counted, then refused for its missing file
        for path in ("/api/v1/upload", "/upload", "/api/upload"):
            response = client.post(path, headers={"X-API-Key": KEY_A})
            assert response.status_code == 429, path
            assert "uploads a minute" in response.json()["detail"]
            assert int(response.headers["retry-after"]) >= 1
        assert client.get("/api/v1/status/x", headers={"X-API-Key": KEY_A}).status_code == 404


def test_a_limit_of_zero_is_off(tmp_path, pages):
    with limited_client(tmp_path, rate_limit_requests_per_minute=0, rate_limit_uploads_per_minute=0) as client:
        assert client.app.state.rate_limits.requests is None
        for _ in range(5):
            assert client.get("/api/v1/status/x", headers={"X-API-Key": KEY_A}).status_code == 404


def test_without_keys_the_count_is_per_address(tmp_path, pages):
    with client_for(settings(tmp_path, rate_limit_requests_per_minute=1), memory_limiter=True) as client:
        assert client.get("/api/v1/status/x").status_code == 404
        assert client.get("/api/v1/status/x").status_code == 429
        storage = client.app.state.rate_limits.limiter.storage
        assert any("address:testclient" in key for key in storage.events)


def test_a_redis_that_does_not_answer_lets_requests_through_quickly(tmp_path, pages, caplog):
    # The real limiter on a Redis that is not there: fail open, one warning, no hang.
    with client_for(settings(tmp_path, rate_limit_requests_per_minute=1)) as client:
        began = time.monotonic()
        for _ in range(5):
            assert client.get("/api/v1/status/x").status_code == 404
        assert time.monotonic() - began < 5
    warnings = [r for r in caplog.records if r.name == "api.rate_limits"]
    assert len(warnings) == 1
    assert "letting requests through" in warnings[0].getMessage()


@pytest.mark.parametrize(
    ("redis_url", "uri"),
    [
        ("redis://127.0.0.1:6379/0", "async+redis://127.0.0.1:6379/0"),
        ("rediss://:pw@cache.example.com:6380/1", "async+rediss://:pw@cache.example.com:6380/1"),
        ("unix:///run/redis.sock?db=2", "async+redis+unix:///run/redis.sock?db=2"),
    ],
)
def test_the_limits_storage_uri(redis_url, uri):
    assert limits_storage_uri(redis_url) == uri


# --- CORS ---------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str):
    return client.options(
        "/api/v1/upload",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, x-api-key, idempotency-key, content-type",
        },
    )


def test_a_preflight_from_an_allowed_origin(client):
    response = preflight(client, ALLOWED_ORIGIN)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "x-api-key", "idempotency-key", "content-type"} <= allowed
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "access-control-allow-credentials" not in response.headers


def test_a_preflight_from_a_refused_origin_is_a_json_400(client):
    response = preflight(client, "https://evil.example.com")
    assert response.status_code == 400
    assert response.json() == {"detail": "Disallowed CORS origin"}
    assert "access-control-allow-origin" not in response.headers


def test_answers_to_an_allowed_origin_expose_the_request_id_and_retry_after(client):
    response = client.get("/api/v1/status/x", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 401  # a browser can read why
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"x-request-id", "retry-after"}
    refused = client.get("/healthz", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in refused.headers


def test_without_cors_origins_no_cors_headers(keyless):
    response = keyless.get("/healthz", headers={"Origin": ALLOWED_ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    assert preflight(keyless, ALLOWED_ORIGIN).status_code == 405


def test_a_redis_that_hangs_costs_one_short_wait_then_is_skipped(tmp_path, pages):
    # A server that takes connections and never answers: Redis stopped (SIGSTOP) or a black hole.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        configured = Settings.load(
            mongodb_url=f"mongodb://{NOWHERE}",
            redis_url=f"redis://127.0.0.1:{port}/0",
            data_dir=tmp_path,
            rate_limit_requests_per_minute=1,
        )
        with client_for(configured) as client:
            began = time.monotonic()
            assert client.get("/api/v1/status/x").status_code == 404
            first = time.monotonic() - began
            began = time.monotonic()
            for _ in range(5):
                assert client.get("/api/v1/status/x").status_code == 404
            after = time.monotonic() - began
    assert first < 2
    assert after < 0.5  # skipped while the failure is recent
