"""API keys and rate limits (CONTRACT §4) against a running service of its own.

A stack with `API_KEYS` set and a low upload limit, so that the session's keyless stack is
left as it is. Each test uses keys of its own where counts matter.
"""

import hashlib
import time
import uuid

import httpx
import pytest
import redis

from tests.support.client import bearer, product_csv
from tests.support.stack import Stack, start_stack

KEY_A, KEY_B, KEY_C = "key-a", "key-b", "key-c"
UPLOADS_PER_MINUTE = 3


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory: pytest.TempPathFactory) -> Stack:
    extra = {
        "API_KEYS": f"{KEY_A},{KEY_B},{KEY_C}",
        "RATE_LIMIT_UPLOADS_PER_MINUTE": str(UPLOADS_PER_MINUTE),
        "RATE_LIMIT_REQUESTS_PER_MINUTE": "1000",
        "CORS_ORIGINS": "https://shop.example.com",
    }
    with start_stack(tmp_path_factory.mktemp("keyed-stack"), extra) as running:
        yield running


def upload(stack: Stack, csv_text: str, headers: dict[str, str], path: str = "/api/v1/upload") -> httpx.Response:
    files = {"file": ("products.csv", csv_text.encode(), "text/csv")}
    return httpx.post(f"{stack.base_url}{path}", files=files, headers=headers, timeout=60)


@pytest.fixture
def one_image(image_server) -> str:
    return product_csv([(1, "SKU1", [image_server.image("photo.jpg")])])


def test_without_a_valid_key_the_api_is_401_and_health_stays_open(keyed_stack):
    for headers in ({}, bearer("nope"), {"X-API-Key": "nope"}):
        response = httpx.get(f"{keyed_stack.api}/status/{uuid.uuid4()}", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert isinstance(response.json()["detail"], str)
    assert httpx.get(f"{keyed_stack.base_url}/healthz").status_code == 200
    assert httpx.get(f"{keyed_stack.base_url}/readyz").status_code == 200
    assert httpx.get(f"{keyed_stack.base_url}/openapi.json").status_code == 200


def test_a_request_is_visible_only_with_the_key_that_made_it(keyed_stack, one_image):
    response = upload(keyed_stack, one_image, bearer(KEY_A))
    assert response.status_code == 202, response.text
    request_id = response.json()["request_id"]
    # The owner's key, in either header form, on the versioned path and the design documents' alias.
    own = [bearer(KEY_A), {"X-API-Key": KEY_A}]
    for headers in own:
        assert httpx.get(f"{keyed_stack.api}/status/{request_id}", headers=headers).status_code == 200
        assert httpx.get(f"{keyed_stack.base_url}/status/{request_id}", headers=headers).status_code == 200

    # Another key: exactly the answer for an id that does not exist.
    unknown = str(uuid.uuid4())
    for rid in (request_id, unknown):
        paths = (f"/api/v1/status/{rid}", f"/status/{rid}", f"/api/v1/status/{rid}/images")
        for path in (*paths, f"/api/v1/download/{rid}", f"/output_csv/{rid}", f"/export/{rid}/"):
            response = httpx.get(f"{keyed_stack.base_url}{path}", headers=bearer(KEY_B))
            assert response.status_code == 404, path
            assert response.json() == {"detail": "request not found"}
        response = httpx.post(
            f"{keyed_stack.api}/webhook",
            json={"request_id": rid, "webhook_url": "https://shop.example.com/hooks"},
            headers=bearer(KEY_B),
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "request not found"}

    # The other key's webhook call changed nothing; the owner's own still works.
    with keyed_stack.mongo() as mongo:
        document = mongo.image_service.requests.find_one({"_id": request_id}, {"products": 0})
    assert document["webhook"] is None
    assert document["owner"] == hashlib.sha256(KEY_A.encode()).hexdigest()
    assert KEY_A not in str(document)
    response = httpx.post(
        f"{keyed_stack.api}/webhook",
        json={"request_id": request_id, "webhook_url": "https://shop.example.com/hooks"},
        headers=bearer(KEY_A),
    )
    assert response.status_code == 200


def test_the_download_is_the_owners_only(keyed_stack, one_image):
    request_id = upload(keyed_stack, one_image, bearer(KEY_A)).json()["request_id"]
    deadline = time.monotonic() + 60
    while (response := httpx.get(f"{keyed_stack.api}/download/{request_id}", headers=bearer(KEY_A))).status_code == 409:
        assert time.monotonic() < deadline, "not final within 60 s"
        time.sleep(0.25)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert httpx.get(f"{keyed_stack.api}/download/{request_id}", headers=bearer(KEY_B)).status_code == 404


def test_the_same_idempotency_key_under_two_keys_makes_two_requests(keyed_stack, one_image):
    idempotency = {"Idempotency-Key": f"catalogue-{uuid.uuid4()}"}
    first_a = upload(keyed_stack, one_image, {**bearer(KEY_B), **idempotency})
    again_a = upload(keyed_stack, one_image, {**bearer(KEY_B), **idempotency})
    other_b = upload(keyed_stack, one_image, {"X-API-Key": KEY_C, **idempotency})
    assert first_a.status_code == again_a.status_code == other_b.status_code == 202
    assert first_a.json()["request_id"] == again_a.json()["request_id"]
    assert other_b.json()["request_id"] != first_a.json()["request_id"]
    # And each sees only its own.
    response = httpx.get(f"{keyed_stack.api}/status/{other_b.json()['request_id']}", headers=bearer(KEY_B))
    assert response.status_code == 404


def test_past_the_upload_limit_a_429_with_retry_after_counted_in_redis(keyed_stack, one_image):
    key = KEY_C  # two uploads of KEY_C in the test above may already count: fill up to the limit
    headers = bearer(key)
    answers = [upload(keyed_stack, one_image, headers, path) for path in ("/api/v1/upload", "/upload", "/api/upload")]
    answers += [upload(keyed_stack, one_image, headers) for _ in range(UPLOADS_PER_MINUTE)]
    codes = [answer.status_code for answer in answers]
    assert 202 in codes and 429 in codes and codes.count(202) <= UPLOADS_PER_MINUTE
    assert codes == sorted(codes)  # once refused, refused: 202s, then 429s
    refused = answers[-1]
    assert refused.status_code == 429
    assert refused.json()["detail"] == f"rate limit of {UPLOADS_PER_MINUTE} uploads a minute reached; " + (
        f"retry in {refused.headers['retry-after']} s"
    )
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    # Other routes and other keys are not held back by the upload limit.
    assert httpx.get(f"{keyed_stack.api}/status/{uuid.uuid4()}", headers=headers).status_code == 404
    assert upload(keyed_stack, one_image, bearer(KEY_A)).status_code == 202

    # The count lives in Redis, where every API process reads it: one list per caller and limit,
    # named by the key's digest (never the key), holding the accepted uploads of the last minute.
    digest = hashlib.sha256(key.encode()).hexdigest()
    counter = f"image-api:rate-limit:uploads/key:{digest}/{UPLOADS_PER_MINUTE}/1/minute"
    client = redis.Redis.from_url(keyed_stack.environment()["REDIS_URL"])
    try:
        assert client.llen(counter) == UPLOADS_PER_MINUTE
        assert not [name for name in client.keys("image-api:rate-limit:*") if key.encode() in name.split(b"/")]
        # Emptied in Redis, the API lets the caller upload again at once.
        client.delete(counter)
        assert upload(keyed_stack, one_image, headers).status_code == 202
        assert client.llen(counter) == 1
    finally:
        client.close()
