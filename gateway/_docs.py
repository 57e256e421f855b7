"""`/docs` (Swagger UI) and `/redoc` served offline: their assets come from an installed package.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so they are blank without internet.
The gateway turns them off (`docs_url=None, redoc_url=None`) and serves the same pages with
the JavaScript, CSS and favicon of the `fastapi-offline` package (PyPI), mounted under
`/static/docs`: nothing on either page comes from another origin (no Google Fonts either),
and a Content-Security-Policy makes the browser refuse anything that would (ReDoc's sidebar
logo, which hides itself when it cannot load).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/static/docs"
"""Where the Swagger UI and ReDoc files are served."""
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # each page starts its UI with an inline script
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "worker-src 'self' blob:",  # ReDoc's search index runs in a blob worker
        "frame-ancestors 'self'",
    )
)
"""The docs pages' Content-Security-Policy: this origin only."""


def assets_directory() -> Path:
    """The folder of the installed `fastapi_offline` package's Swagger UI and ReDoc files."""
    return Path(str(files("fastapi_offline") / "static"))


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and `/redoc` from local assets; `app` must be built with both URLs None."""
    app.mount(ASSETS_URL, StaticFiles(directory=assets_directory()), name="docs-assets")
    app.include_router(_docs_router(app.title, app.openapi_url or "/openapi.json"))


def _docs_router(title: str, openapi_url: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    favicon = f"{ASSETS_URL}/favicon.png"

    @router.get(DOCS_URL)
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI on the app's OpenAPI document, with local assets."""
        return _own_origin_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{title} - Swagger UI",
                swagger_js_url=f"{ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=favicon,
                # No badge fetched from the public validator service.
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @router.get(REDOC_URL)
    async def redoc() -> HTMLResponse:
        """ReDoc on the app's OpenAPI document, with local assets and system fonts."""
        return _own_origin_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{title} - ReDoc",
                redoc_js_url=f"{ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=favicon,
                with_google_fonts=False,
            )
        )

    return router


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page
