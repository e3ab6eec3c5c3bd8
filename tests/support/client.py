"""Talking to the running service as a client program would."""

import time

import httpx

from shared.models import FINAL_STATUS_VALUES

HEADER = "S. No.,Product Name,Input Image Urls\n"


def bearer(key: str) -> dict[str, str]:
    """The headers that present an API key."""
    return {"Authorization": f"Bearer {key}"}


def product_csv(rows: list[tuple[int, str, list[str]]]) -> str:
    lines = [HEADER.strip()]
    for serial, name, urls in rows:
        lines.append(f'{serial},{name},"{",".join(urls)}"')
    return "\n".join(lines) + "\n"


def upload(
    api: str, csv_text: str | bytes, *, webhook_url: str | None = None, idempotency_key: str | None = None
) -> httpx.Response:
    content = csv_text.encode() if isinstance(csv_text, str) else csv_text
    data = {"webhook_url": webhook_url} if webhook_url else None
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    return httpx.post(
        f"{api}/upload", files={"file": ("products.csv", content, "text/csv")}, data=data, headers=headers, timeout=60
    )


def accepted_id(api: str, csv_text: str, **options) -> str:
    response = upload(api, csv_text, **options)
    assert response.status_code == 202, response.text
    return response.json()["request_id"]


def status(api: str, request_id: str, headers: dict[str, str] | None = None, **params) -> dict:
    response = httpx.get(f"{api}/status/{request_id}", params=params, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def wait_final(api: str, request_id: str, timeout: float = 90, headers: dict[str, str] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = status(api, request_id, headers, limit=1000)
        if body["status"] in FINAL_STATUS_VALUES:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"request {request_id} not final after {timeout} s: {body['progress']}")
        time.sleep(0.25)
