"""The base of every wire model: OpenAI's names, unknown fields kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

# The largest token count a request may ask for (2^31 - 1, a 32-bit count as upstreams use).
MAX_TOKENS = 2**31 - 1


class WireModel(BaseModel):
    """A JSON object from or to an OpenAI-compatible peer; extra keys pass through."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def to_json_bytes(self) -> bytes:
        """Serialise what the client sent (and what we set), without invented defaults."""
        return self.model_dump_json(exclude_unset=True).encode()
