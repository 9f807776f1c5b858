"""`GET /dashboard`: the page and its script (static files shipped in the package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from proxy.errors import NotFound

STATIC = Path(__file__).with_name("static")
VENDORED = {"uPlot.iife.min.js": "text/javascript", "uPlot.min.css": "text/css"}
router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The page; it asks for the admin key and reads /admin/timeseries and /admin/stats."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/dashboard/dashboard.js", include_in_schema=False)
async def script() -> FileResponse:
    """The plotting script."""
    return FileResponse(STATIC / "dashboard.js", media_type="text/javascript")


@router.get("/dashboard/vendor/{name}", include_in_schema=False)
async def vendored(name: str) -> FileResponse:
    """The charting library (uPlot, vendored from npm; see static/vendor/VENDORED.md)."""
    media_type = VENDORED.get(name)
    if media_type is None:
        raise NotFound(f"No dashboard file {name!r}.", code="not_found")
    return FileResponse(STATIC / "vendor" / name, media_type=media_type,
                        headers={"cache-control": "public, max-age=86400"})
