"""Director: the per-request directive decision (policy, task class, one draw, injection)."""

from __future__ import annotations

import dataclasses
import random

from proxy.auth.keys import KeyRing
from proxy.classify.learned import ClassifierHolder
from proxy.directives.catalogue import Catalogue
from proxy.directives.injection import (
    inject_chat,
    inject_completion,
    inject_completion_text,
    inject_responses,
)
from proxy.directives.policy import KeyPolicy, choose
from proxy.directives.store import CatalogueStore
from proxy.limits.usage import KeyUsage
from proxy.optimiser.allocation import AllocationHolder
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest
from proxy.protocol.responses import ResponsesRequest

Directable = ChatCompletionRequest | CompletionRequest | ResponsesRequest


@dataclasses.dataclass(frozen=True, slots=True)
class DirectiveDecision:
    """What the Director decided: the level (or off | exempt), its text's hash, the class."""

    level: str | None = None
    text_sha256: str | None = None
    task_class: str | None = None


NO_DIRECTIVE = DirectiveDecision()  # embeddings, and requests rejected before the decision


class Director:
    """Pure apart from one uniform draw; no I/O. Returns its decision as a value."""

    def __init__(self, catalogues: CatalogueStore, holder: AllocationHolder, keys: KeyRing,
                 default: str, rng: random.Random, usage: KeyUsage,
                 classifiers: ClassifierHolder | None = None) -> None:
        if default not in ("off", "auto") and catalogues.current.get(default) is None:
            raise ValueError(f"directive default {default!r} is not off, auto or a level id")
        self.catalogues = catalogues
        self.holder = holder
        self._keys = keys
        self._default = default
        self._rng = rng
        self._usage = usage
        # Regex classes until the optimiser job publishes a learned-class predictor.
        self.classifiers = classifiers or ClassifierHolder()

    @property
    def catalogue(self) -> Catalogue:
        """The catalogue in force."""
        return self.catalogues.current

    def key_policy(self, key_id: str | None) -> KeyPolicy | None:
        """A virtual key's policy (routing reads its lambda)."""
        return self._keys.policy(key_id)

    def apply(
        self, request: Directable, key_id: str | None, header: str | None,
    ) -> tuple[Directable, DirectiveDecision]:
        """The request as it goes upstream and the decision; InvalidRequest for a bad header."""
        catalogue = self.catalogues.current
        choice = choose(catalogue, header=header, key_policy=self._keys.policy(key_id),
                        default=self._default, structured=request.is_structured())
        task_class = self.classifiers.current.classify(request.task_text())
        if choice.mode == "auto":
            level = self.holder.current.draw(task_class, self._rng.random())
        elif choice.mode == "pinned" and choice.level is not None:
            level = choice.level
        else:
            return request, DirectiveDecision(choice.mode, None, task_class)  # off | exempt
        # A key near its carbon budget gets at least its budget step's level (shorter answers),
        # whatever the allocation drew or the client pinned.
        floor = self._usage.budget_level(key_id)
        if floor is not None and catalogue.get(floor) is not None and (
                catalogue.ids.index(floor) > _index(catalogue, level)):
            level = floor
        directive = catalogue.get(level)
        if directive is None:  # a level dropped from the catalogue since the last solve
            directive = catalogue.baseline
        if directive.text is not None:
            if isinstance(request, ChatCompletionRequest):
                request = inject_chat(request, directive.text)
            elif isinstance(request, ResponsesRequest):
                request = inject_responses(request, directive.text)
            elif inject_completion(request):
                request = inject_completion_text(request, directive.text)
            else:  # token-id prompts cannot carry text
                return request, DirectiveDecision("exempt", None, task_class)
        return request, DirectiveDecision(directive.level, directive.text_sha256, task_class)


def _index(catalogue: Catalogue, level: str) -> int:
    """A level's place from longest (0) to shortest answers; unknown levels count as 0."""
    return catalogue.ids.index(level) if level in catalogue.ids else 0
