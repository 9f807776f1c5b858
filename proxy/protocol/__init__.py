"""OpenAI wire format as pydantic models; unknown fields pass through untouched."""
