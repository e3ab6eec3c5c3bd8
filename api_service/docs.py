"""Swagger UI at /docs and ReDoc at /redoc, with every script and style served by the service itself.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet access
/docs is a blank page. Here the same pages (FastAPI's `get_swagger_ui_html` and `get_redoc_html`)
point at the copies that the pinned `fastapi-offline` package ships, served under /docs-assets.
The app must be created with `docs_url=None, redoc_url=None`. Like the schema, they need no key.
"""

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
# swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js and favicon.png.
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
SWAGGER_UI_PARAMETERS = {
    # No badge fetched from validator.swagger.io: the page asks nothing of other hosts.
    "validatorUrl": None,
}
# ReDoc's sidebar always shows Redocly's logo from their CDN (it hides itself when that fails):
# images from this service only, so that the page asks nothing of any other host.
HEADERS = {"Content-Security-Policy": "img-src 'self' data:"}


def install_docs(app: FastAPI) -> None:
    if not (ASSETS_DIR / "swagger-ui-bundle.js").is_file():
        raise RuntimeError(f"Swagger UI assets missing from {ASSETS_DIR}: reinstall fastapi-offline")
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    def asset(request: Request, name: str) -> str:
        return f"{request.scope.get('root_path', '')}{ASSETS_URL}/{name}"

    def schema(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=schema(request),
            title=f"{app.title} - Swagger UI",
            swagger_js_url=asset(request, "swagger-ui-bundle.js"),
            swagger_css_url=asset(request, "swagger-ui.css"),
            swagger_favicon_url=asset(request, "favicon.png"),
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        page.headers.update(HEADERS)
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=schema(request),
            title=f"{app.title} - ReDoc",
            redoc_js_url=asset(request, "redoc.standalone.js"),
            redoc_favicon_url=asset(request, "favicon.png"),
            with_google_fonts=False,
        )
        page.headers.update(HEADERS)
        return page
