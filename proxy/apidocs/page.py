"""`/docs` and `/redoc` from vendored assets: they render without internet access.

FastAPI's defaults load Swagger UI and ReDoc from a CDN, so on an air-gapped host both pages
stay blank. Here the pages are FastAPI's own HTML pointed at files shipped in the package
(`static/`, swagger-ui-dist 5.35.0 and redoc 2.5.2 from npm; versions, integrity and licences
in `static/VENDORED.md`), and ReDoc is told not to fetch Google's fonts. `/favicon.ico` is the
dashboard's icon.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from proxy.errors import NotFound

STATIC = Path(__file__).with_name("static")
FAVICON = Path(__file__).parent.parent / "dashboard" / "static" / "favicon.ico"
ASSETS = {  # served name -> media type; nothing else in static/ is served
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}
router = APIRouter(include_in_schema=False)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over this app's OpenAPI schema."""
    return get_swagger_ui_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - API",
        swagger_js_url="/docs/assets/swagger-ui-bundle.js",
        swagger_css_url="/docs/assets/swagger-ui.css", swagger_favicon_url="/favicon.ico",
        oauth2_redirect_url="/docs/oauth2-redirect")


@router.get("/docs/oauth2-redirect")
async def swagger_ui_redirect() -> HTMLResponse:
    """Swagger UI's OAuth2 helper page (self-contained)."""
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over the same schema, with system fonts."""
    return get_redoc_html(
        openapi_url=_openapi_url(request), title=f"{request.app.title} - API reference",
        redoc_js_url="/docs/assets/redoc.standalone.js", redoc_favicon_url="/favicon.ico",
        with_google_fonts=False)


@router.get("/docs/assets/{name}")
async def asset(name: str) -> FileResponse:
    """One vendored file (cached a day: the name changes only with an upgrade of the proxy)."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No documentation asset {name!r}.", code="not_found")
    return FileResponse(STATIC / name, media_type=media_type,
                        headers={"cache-control": "public, max-age=86400"})


@router.get("/favicon.ico")
async def favicon() -> FileResponse:
    """The sprout icon (browsers ask for it on every page)."""
    return FileResponse(FAVICON, media_type="image/x-icon",
                        headers={"cache-control": "public, max-age=86400"})


def _openapi_url(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    schema: str = request.app.openapi_url or "/openapi.json"
    return root + schema
