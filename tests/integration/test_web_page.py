"""The web page at / and the API docs, in a real headless Chromium (Debian's, driven by Playwright).

The browser is `/usr/bin/chromium` (`make test` installs it when missing), never one that
Playwright would download. Every request it makes to a host other than loopback is aborted and
recorded, so a page that needs the internet fails here as it would on a machine without it.
"""

import itertools
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, Request, Route, expect, sync_playwright

from tests.support.client import product_csv
from tests.support.stack import Stack, start_stack

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}
FINAL_TIMEOUT_MS = 90_000
API_KEY = "web-page-key-0123"


@dataclass
class Traffic:
    """What the browser asked for: every URL, and those that tried to leave the machine."""

    requests: list[tuple[float, str]] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def urls(self) -> list[str]:
        return [url for _, url in self.requests]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def traffic(browser: BrowserContext) -> Iterator[Traffic]:
    seen = Traffic()

    # Every request that reaches the network (one that the page's Content-Security-Policy blocks
    # never does).
    def guard(route: Route, request: Request) -> None:
        url = request.url
        seen.requests.append((time.monotonic(), url))
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            seen.outside.append(url)
            route.abort()

    browser.route("**/*", guard)
    yield seen
    browser.unroute("**/*", guard)


@pytest.fixture
def page(browser: BrowserContext, traffic: Traffic) -> Iterator[Page]:
    opened = browser.new_page()
    opened.on("pageerror", lambda error: traffic.page_errors.append(str(error)))
    yield opened
    opened.close()


def csv_file(text: str) -> dict:
    return {"name": "products.csv", "mimeType": "text/csv", "buffer": text.encode()}


def size_text(size: int) -> str:
    """As the page writes a size."""
    if size < 1000:
        return f"{size} B"
    if size < 1_000_000:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.2f} MB"


def loaded_width(page: Page, selector: str) -> int:
    """The natural width of an image once it has loaded (0 if it could not be)."""
    image = page.locator(selector)
    image.scroll_into_view_if_needed()
    page.wait_for_function("(image) => image.complete", arg=image.element_handle(), timeout=15_000, polling=100)
    return image.evaluate("(image) => image.naturalWidth")


def test_swagger_ui_renders_the_api_with_nothing_from_the_internet(stack, page, traffic):
    page.goto(f"{stack.base_url}/docs")
    upload = page.locator(".opblock-post", has=page.locator('[data-path="/api/v1/upload"]'))
    expect(upload).to_be_visible(timeout=20_000)
    expect(upload).to_contain_text("Upload a product CSV")
    upload.locator(".opblock-summary").click()
    expect(upload.get_by_role("button", name="Try it out")).to_be_visible()

    assert traffic.outside == []
    origin = f"{stack.base_url}/"
    assert [url for url in traffic.urls() if not url.startswith(origin)] == []
    assert f"{stack.base_url}/docs-assets/swagger-ui-bundle.js" in traffic.urls()
    assert traffic.page_errors == []


def test_redoc_renders_the_api_with_nothing_from_the_internet(stack, page, traffic):
    page.goto(f"{stack.base_url}/redoc")
    expect(page.get_by_role("heading", name="Upload a product CSV").first).to_be_visible(timeout=20_000)
    # Its sidebar always shows Redocly's logo from their CDN: the page's policy keeps it from asking.
    expect(page.get_by_role("link", name="API docs by Redocly")).to_be_attached()
    page.wait_for_timeout(500)
    assert traffic.outside == []
    assert [url for url in traffic.urls() if not url.startswith(f"{stack.base_url}/")] == []
    assert traffic.page_errors == []


def test_the_page_uploads_a_csv_and_shows_each_image_before_and_after(stack, image_server, page, traffic, tmp_path):
    photo, missing = image_server.image("photo.jpg"), f"{image_server.url}/status/404"
    slow_png = f"{image_server.url}/delay/3/photo.png"
    rows = [(1, "<b>Shoes</b>", [photo, missing]), (2, "Hats", [slow_png])]
    page.goto(f"{stack.base_url}/")
    expect(page).to_have_title("Image processing service")

    page.set_input_files("#file", csv_file(product_csv(rows)))
    expect(page.locator("#file-name")).to_have_text(re.compile(r"^Chosen: products\.csv \(\d+ B\)$"))
    page.get_by_role("button", name="Upload").click()

    # Live progress while the slow image is on its way: a bar, and the same in words.
    messages = page.locator("#messages")
    expect(messages).to_contain_text("Uploaded: 2 products, 3 images. Processing…")
    expect(page.locator("#progress")).to_be_visible()
    expect(page.locator("#progress")).to_have_attribute("max", "3")
    expect(page.locator("#progress-text")).to_contain_text(re.compile(r"^[0-2] of 3 images done"))
    request_id = page.locator("#request-id").inner_text()

    # Final: the output CSV link, then the whole table.
    expect(page.locator("#download-link")).to_be_visible(timeout=FINAL_TIMEOUT_MS)
    expect(page.locator("#request-state")).to_have_text("Completed with errors")
    expect(page.locator("#progress-text")).to_have_text("3 of 3 images done, 1 failed (100.0 %)")
    expect(page.locator("#progress")).to_have_js_property("value", 3)
    expect(messages).to_contain_text("Finished: Completed with errors. 1 of 3 images failed.")

    log = {
        (entry["serial_number"], entry["position"]): entry
        for entry in httpx.get(f"{stack.api}/status/{request_id}/images").json()["images"]
    }
    stored = page.locator('tr[data-image="1-0"]')
    entry = log[(1, 0)]
    assert loaded_width(page, 'tr[data-image="1-0"] td:nth-of-type(2) img') == entry["width"]
    assert loaded_width(page, 'tr[data-image="1-0"] td:nth-of-type(3) img') == entry["width"]
    assert stored.locator("td:nth-of-type(2) img").get_attribute("src") == photo
    assert stored.locator("td:nth-of-type(3) img").get_attribute("src") == entry["output_url"]
    expect(stored.locator("td:nth-of-type(2)")).to_contain_text(
        f"{size_text(entry['bytes_in'])} · JPEG · {entry['width']}×{entry['height']}"
    )
    expect(stored.locator("td:nth-of-type(3)")).to_contain_text(size_text(entry["bytes_out"]))
    saved = entry["bytes_in"] - entry["bytes_out"]
    expect(stored.locator("td:nth-of-type(4)")).to_have_text(
        f"{100 * saved / entry['bytes_in']:.1f} % smaller (−{size_text(saved)})"
    )
    expect(page.locator('tr[data-image="1-1"] td:nth-of-type(3)')).to_have_text("Failed: HTTP 404")
    expect(page.locator('tr[data-image="2-0"] td:nth-of-type(3) img')).to_have_count(1)

    # A product name is shown as text, never run as HTML.
    product = page.locator('tr[data-image="1-0"] th')
    expect(product).to_contain_text("1. <b>Shoes</b>")
    expect(product).to_contain_text("Completed")
    assert page.locator("#images b").count() == 0

    href = page.locator("#download-link").get_attribute("href")
    assert href == f"/api/v1/download/{request_id}"
    output = httpx.get(f"{stack.base_url}{href}")
    assert output.status_code == 200 and output.headers["content-type"].startswith("text/csv")

    page.screenshot(path=tmp_path / "finished.png", full_page=True)

    # Polite polling: one status poll at least 1.5 s after the one before, and none once final.
    def status_polls() -> list[float]:
        return [moment for moment, url in traffic.requests if urlsplit(url).path == f"/api/v1/status/{request_id}"]

    polls = status_polls()
    assert len(polls) >= 2
    assert min(later - earlier for earlier, later in itertools.pairwise(polls)) >= 1.45
    time.sleep(3)
    assert len(status_polls()) == len(polls)
    # The API's own routes only.
    api_calls = {
        urlsplit(url).path for _, url in traffic.requests if urlsplit(url).port == urlsplit(stack.base_url).port
    }
    assert {path for path in api_calls if path.startswith("/api/")} <= {
        "/api/v1/upload", f"/api/v1/status/{request_id}", f"/api/v1/status/{request_id}/images", "/api/v1/requests",
    }  # fmt: skip
    assert traffic.outside == [] and traffic.page_errors == []


def test_a_refused_csv_shows_its_errors_with_line_and_column(stack, page):
    refused = "S. No.,Product Name,Input Image Urls\n1,SKU1,not-a-url\n1,,https://img.example.com/a.jpg\n"
    expected = httpx.post(f"{stack.api}/upload", files={"file": ("products.csv", refused.encode(), "text/csv")})
    assert expected.status_code == 400
    page.goto(f"{stack.base_url}/")
    page.set_input_files("#file", csv_file(refused))
    page.get_by_role("button", name="Upload").click()

    expect(page.locator("#message")).to_have_text(f"Error: the file was refused: {expected.json()['detail']}")
    items = page.locator("#error-list li")
    expect(items).to_have_text(
        [f"Line {e['line']}, column “{e['column']}”: {e['message']}" for e in expected.json()["errors"]]
    )
    expect(items.first).to_contain_text("Line 2, column “Input Image Urls”")
    assert page.locator("#result").is_hidden()


def test_an_invalid_webhook_url_is_shown_and_no_file_is_asked_for_first(stack, page):
    page.goto(f"{stack.base_url}/")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#message")).to_have_text("Error: choose a CSV file first.")
    expect(page.locator("#file")).to_be_focused()

    page.set_input_files("#file", csv_file("S. No.,Product Name,Input Image Urls\n1,A,https://img.example.com/a.jpg\n"))
    page.get_by_label("Webhook URL").fill("ftp://hooks.example.com/")
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#message")).to_contain_text("Error: the file was refused: invalid webhook_url")
    expect(page.locator("#error-list li")).to_have_count(1)
    expect(page.locator("#error-list li")).to_contain_text("webhook_url: ")


def test_the_page_has_labels_and_works_with_the_keyboard(stack, image_server, page):
    page.goto(f"{stack.base_url}/")
    # Every control has a real label.
    assert page.get_by_label("Choose a CSV file").get_attribute("id") == "file"
    assert page.get_by_label("Webhook URL").get_attribute("id") == "webhook-url"
    assert page.get_by_label("Process every image again").get_attribute("id") == "refresh"
    assert page.get_by_label("Progress").get_attribute("id") == "progress"
    assert page.locator("#messages").get_attribute("aria-live") == "polite"
    assert page.locator("#key-field").is_hidden()  # this service has no API keys

    # Tab reaches the file input, then the webhook field, then the button.
    focused = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("document.activeElement.id"))
    assert (
        focused.index("file") < focused.index("webhook-url") < focused.index("refresh") < focused.index("upload-button")
    )

    # The focused control is the browser's own file input, which opens its chooser on Space or
    # Enter; whether headless Chromium shows that chooser depends on window focus, which a test
    # running beside others does not control, so the file is set on the focused input instead.
    page.locator("#file").focus()
    assert page.evaluate("document.activeElement.type") == "file"
    rows = [(1, "Keyboard", [image_server.image("tiny.jpg")])]
    page.locator("#file").set_input_files(csv_file(product_csv(rows)))
    expect(page.locator("#file-name")).to_contain_text("Chosen: products.csv")
    for _ in range(3):  # the webhook URL, the refresh box, the button
        page.keyboard.press("Tab")
    expect(page.locator("#upload-button")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#download-link")).to_be_visible(timeout=FINAL_TIMEOUT_MS)
    expect(page.locator("#request-state")).to_have_text("Completed")


def test_a_file_can_be_dropped_on_the_drop_zone(stack, page):
    page.goto(f"{stack.base_url}/")
    page.evaluate(
        """() => {
            const data = new DataTransfer();
            data.items.add(new File(["S. No.,Product Name,Input Image Urls\\n"], "dropped.csv", {type: "text/csv"}));
            document.getElementById("drop-zone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("#file-name")).to_have_text("Chosen: dropped.csv (37 B)")
    assert page.evaluate("document.getElementById('file').files[0].name") == "dropped.csv"
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#message")).to_contain_text("Error: the file was refused")


@pytest.fixture(scope="module")
def keyed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = {"API_KEYS": API_KEY, "REUSE_OUTPUTS": "true", "WORKER_CONCURRENCY": "2", "PRODUCTS_QUEUED_AHEAD": "1"}
    with start_stack(tmp_path_factory.mktemp("keyed-stack"), extra) as running:
        yield running


def test_with_api_keys_the_page_asks_for_one_and_sends_it(keyed_stack, image_server, page, traffic):
    page.goto(f"{keyed_stack.base_url}/")
    key_input = page.get_by_label("API key")
    expect(key_input).to_be_visible()

    page.set_input_files("#file", csv_file(product_csv([(1, "Keyed", [image_server.image("tiny.jpg")])])))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#message")).to_contain_text("Error: an API key is required")
    expect(key_input).to_be_focused()

    key_input.fill(API_KEY)
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#download-link")).to_be_visible(timeout=FINAL_TIMEOUT_MS)
    expect(page.locator("#request-state")).to_have_text("Completed")
    assert page.evaluate("sessionStorage.getItem('image-service-api-key')") == API_KEY

    # The link needs the key too: the page fetches the file with it and saves it.
    with page.expect_download() as saving:
        page.locator("#download-link").click()
    saved = Path(saving.value.path()).read_text()
    assert saved.startswith("S. No.,Product Name,Input Image Urls,Output Image Urls")
    assert "/media/" in saved
    assert traffic.outside == [] and traffic.page_errors == []


def signed_in(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.base_url}/")
    page.get_by_label("API key").fill(API_KEY)
    page.get_by_label("API key").dispatch_event("change")


def upload_on_page(page: Page, rows: list[tuple[int, str, list[str]]], refresh: bool = False) -> str:
    page.set_input_files("#file", csv_file(product_csv(rows)))
    if refresh:
        page.get_by_label("Process every image again").check()
    page.get_by_role("button", name="Upload").click()
    expect(page.locator("#messages")).to_contain_text("Uploaded:")
    return page.locator("#request-id").inner_text()


def test_reused_images_are_marked_on_the_page(keyed_stack, image_server, page, traffic):
    mark = uuid.uuid4().hex
    rows = [(1, "Again", [f"{image_server.url}/validated/{name}?{mark}" for name in ("photo.jpg", "photo.png")])]
    signed_in(page, keyed_stack)
    upload_on_page(page, rows)
    expect(page.locator("#request-state")).to_have_text("Completed", timeout=FINAL_TIMEOUT_MS)
    expect(page.locator("tr[data-reuse]")).to_have_count(0)

    upload_on_page(page, rows)
    expect(page.locator("#request-state")).to_have_text("Completed", timeout=FINAL_TIMEOUT_MS)
    expect(page.locator('tr[data-reuse="not_modified"]')).to_have_count(2)
    expect(page.locator('tr[data-image="1-0"] .reused')).to_have_text("Reused: not modified since an earlier upload")
    expect(page.locator("#progress-text")).to_have_text("2 of 2 images done, 0 failed, 2 reused (100.0 %)")

    upload_on_page(page, rows, refresh=True)
    expect(page.locator("#request-state")).to_have_text("Completed", timeout=FINAL_TIMEOUT_MS)
    expect(page.locator("tr[data-reuse]")).to_have_count(0)
    assert traffic.outside == [] and traffic.page_errors == []


def test_recent_requests_can_be_cancelled_retried_and_deleted_from_the_page(keyed_stack, image_server, page, traffic):
    mark = uuid.uuid4().hex
    signed_in(page, keyed_stack)
    rows = [(i, f"Slow{i}", [f"{image_server.url}/delay/1/tiny.jpg?{mark}-{i}"]) for i in range(1, 9)]
    request_id = upload_on_page(page, rows)
    row = page.locator(f'#recent-rows tr[data-request="{request_id}"]')
    expect(row).to_be_visible()
    expect(row.get_by_role("button", name="Delete")).to_have_count(0)

    row.get_by_role("button", name="Cancel").click()
    expect(page.locator("#request-state")).to_have_text("Cancelled", timeout=20_000)
    expect(row.locator(".state")).to_have_text("Cancelled", timeout=10_000)

    row.get_by_role("button", name="Retry").click()
    expect(page.locator("#messages")).to_contain_text(f"Retrying the failed images of {request_id}")
    expect(page.locator("#request-state")).to_have_text("Completed", timeout=FINAL_TIMEOUT_MS)
    expect(row.locator(".state")).to_have_text("Completed", timeout=10_000)

    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Confirm delete").click()
    expect(page.locator("#messages")).to_contain_text(f"Deleted request {request_id}.")
    expect(row).to_have_count(0)
    status = httpx.get(f"{keyed_stack.api}/status/{request_id}", headers={"Authorization": f"Bearer {API_KEY}"})
    assert status.status_code == 404
    assert traffic.outside == [] and traffic.page_errors == []
