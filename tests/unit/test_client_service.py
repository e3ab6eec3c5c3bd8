"""The command line's client of the API: a lost upload is sent again under the same Idempotency-Key."""

from pathlib import Path

import httpx
import pytest

from client import service
from client.service import Service, Unreachable


@pytest.fixture(autouse=True)
def no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "RETRY_PAUSE_SECONDS", 0)


def test_a_lost_upload_is_retried_with_the_same_idempotency_key(tmp_path: Path) -> None:
    keys: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["Idempotency-Key"])
        if len(keys) < 3:
            raise httpx.ConnectError("connection reset", request=request)
        return httpx.Response(202, json={"request_id": "r1", "products": 1, "images": 1})

    csv_file = tmp_path / "p.csv"
    csv_file.write_text("S. No.,Product Name,Input Image Urls\n1,A,https://x.test/a.jpg\n")
    accepted = Service("http://service.test", transport=httpx.MockTransport(flaky)).upload(csv_file)
    assert accepted["request_id"] == "r1"
    assert len(keys) == 3 and len(set(keys)) == 1


def test_an_upload_never_answered_is_unreachable(tmp_path: Path) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    csv_file = tmp_path / "p.csv"
    csv_file.write_text("x")
    with pytest.raises(Unreachable):
        Service("http://service.test", transport=httpx.MockTransport(down)).upload(csv_file)
