"""API documentation pages (Swagger UI, ReDoc) served from assets shipped in the package."""
