"""The web page and the API docs as the API serves them: open, offline, and told about API keys."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api_service.main import create_app
from shared.settings import Settings

NOWHERE = "127.0.0.1:9"  # the discard port: nothing listens there


def client_for(tmp_path: Path, **values) -> TestClient:
    settings = Settings.load(
        mongodb_url=f"mongodb://{NOWHERE}", redis_url=f"redis://{NOWHERE}/0", data_dir=tmp_path, **values
    )
    return TestClient(create_app(settings))


@pytest.fixture
def keyless(tmp_path: Path) -> Iterator[TestClient]:
    with client_for(tmp_path) as client:
        yield client


def linked_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[:=]\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_the_docs_load_their_scripts_and_styles_from_the_service(keyless, path):
    page = keyless.get(path)
    assert page.status_code == 200
    urls = linked_urls(page.text)
    assert urls and all(url.startswith("/") for url in urls), urls
    for url in urls:
        assert keyless.get(url).status_code == 200, url


def test_the_web_page_and_its_assets_are_served(keyless):
    page = keyless.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'data-api-keys="off"' in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    for url in ("/web/app.js", "/web/style.css"):
        asset = keyless.get(url)
        assert asset.status_code == 200 and asset.content
    assert keyless.get("/web/../main.py").status_code == 404


def test_with_api_keys_the_page_says_a_key_is_needed_and_stays_open(tmp_path):
    with client_for(tmp_path, api_keys="k3y-one") as client:
        for path in ("/", "/docs", "/redoc", "/openapi.json", "/web/app.js", "/docs-assets/swagger-ui.css"):
            assert client.get(path).status_code == 200, path
        assert 'data-api-keys="required"' in client.get("/").text


def test_the_script_never_writes_html():
    script = (Path(__file__).parents[2] / "api_service" / "web" / "static" / "app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
