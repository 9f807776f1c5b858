"""Which directive a request gets: client header, then the key's policy, then the default.

Header `X-Sprout-Directive: off | auto | <level id>`. `auto` lets the optimiser's published
Allocation choose; a level id pins it; `off` sends the request unchanged. Requests with tools or
a JSON `response_format` are exempt from `auto` (a shortened answer could break a schema)
unless the key's policy allows directives on structured output; an explicit pin still applies.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from pydantic import BaseModel, Field

from proxy.directives.catalogue import Catalogue
from proxy.errors import InvalidRequest
from proxy.limits.policy import KeyLimits

Mode = Literal["off", "auto", "pinned", "exempt"]
HEADER = "x-sprout-directive"


class KeyPolicy(BaseModel):
    """Per-key directive policy (stored with the key)."""

    directive: str = "auto"  # off | auto | a level id
    structured_output_directives: bool = False
    # Opt in to prompt capture for the offline evaluator (sampled, deleted after retention).
    capture_prompts: bool = False
    # Energy/latency trade-off (U = lambda E + (1 - lambda) R) for cost-based routing; None
    # uses PROXY_ROUTING_LAMBDA.
    # strict: a JSON `false` is not 0.0 (ints still count as numbers).
    routing_lambda: float | None = Field(default=None, ge=0, le=1, strict=True)
    # Requests and tokens per minute and a carbon budget, fleet-wide (proxy/limits/).
    limits: KeyLimits = Field(default_factory=KeyLimits)


@dataclasses.dataclass(frozen=True, slots=True)
class Choice:
    """What the policy decided; `level` is set only when pinned."""

    mode: Mode
    level: str | None = None


def choose(
    catalogue: Catalogue,
    *,
    header: str | None,
    key_policy: KeyPolicy | None,
    default: str,
    structured: bool,
) -> Choice:
    """Decide the directive mode for one chat or completion request."""
    if header is not None:
        value = header.strip()
        if value not in ("off", "auto") and catalogue.get(value) is None:
            allowed = ", ".join(("off", "auto", *catalogue.ids))
            raise InvalidRequest(
                f"Invalid X-Sprout-Directive header {value!r}; expected one of: {allowed}.",
                code="invalid_directive", param="X-Sprout-Directive",
            )
        source = value
    else:
        source = key_policy.directive if key_policy is not None else default
    if source == "off":
        return Choice("off")
    if source != "auto":
        return Choice("pinned", source)
    allow_structured = key_policy is not None and key_policy.structured_output_directives
    if structured and not allow_structured:
        return Choice("exempt")
    return Choice("auto")
