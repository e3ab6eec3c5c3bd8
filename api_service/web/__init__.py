"""The web page at GET /: upload a CSV, watch its progress, see each image before and after.

Plain HTML, CSS and a small vanilla JavaScript file from static/ (no build step), served
under /web. The page calls only the API's own routes, on its own origin. It needs no key
itself; when `API_KEYS` is set, the page is told so (`data-api-keys="required"` on its body)
and asks for one, which the script sends as `Authorization: Bearer`.
"""

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
ASSETS_URL = "/web"
KEYS_OFF = 'data-api-keys="off"'
KEYS_REQUIRED = 'data-api-keys="required"'

# Defence in depth: the script never writes HTML, and the page loads code and styles from this
# origin only. Images may come from anywhere (the "before" thumbnails are the input URLs), and
# no referrer is sent to their hosts.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' http: https: data: blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def install_web_page(app: FastAPI) -> None:
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    if KEYS_OFF not in page:
        raise RuntimeError(f"{STATIC_DIR / 'index.html'} lacks {KEYS_OFF}")
    app.mount(ASSETS_URL, StaticFiles(directory=STATIC_DIR), name="web")

    # The keys are fixed for the app's life: the page is made once.
    if app.state.api_keys.enabled:
        page = page.replace(KEYS_OFF, KEYS_REQUIRED)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def web_page() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)
