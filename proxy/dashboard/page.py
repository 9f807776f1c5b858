"""`GET /dashboard`: the page and its script (static files shipped in the package)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC = Path(__file__).with_name("static")
router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
async def dashboard() -> FileResponse:
    """The page; it asks for the admin key and reads /admin/timeseries and /admin/stats."""
    return FileResponse(STATIC / "index.html", media_type="text/html")


@router.get("/dashboard/dashboard.js", include_in_schema=False)
async def script() -> FileResponse:
    """The plotting script."""
    return FileResponse(STATIC / "dashboard.js", media_type="text/javascript")
