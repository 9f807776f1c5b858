"""OpenAI's error envelope: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """The inner error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorEnvelope(BaseModel):
    """What every error response carries."""

    error: ErrorBody

    @classmethod
    def of(
        cls, message: str, error_type: str, *, code: str | None = None, param: str | None = None
    ) -> ErrorEnvelope:
        """Build an envelope from its parts."""
        return cls(error=ErrorBody(message=message, type=error_type, code=code, param=param))

    def to_json_bytes(self) -> bytes:
        """Serialise for a response body or an SSE error event."""
        return self.model_dump_json().encode()
