"""sprout-proxy: an OpenAI-compatible gateway that cuts and accounts for LLM carbon."""

# The one place the release number lives: pyproject.toml reads it (dynamic version) and the
# app reports it in its OpenAPI document.
__version__ = "0.1.0"
