"""`GET /v1/models` response."""

from __future__ import annotations

from typing import Literal

from proxy.protocol.base import WireModel


class ModelCard(WireModel):
    """One model the configured pools serve."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "sprout-proxy"


class ModelList(WireModel):
    """The list endpoint's body."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
