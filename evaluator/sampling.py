"""Which captured prompts an evaluation uses, and deleting them after the retention period."""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, select

from proxy.accounting.tables import evaluation_answers, evaluations, prompt_samples
from proxy.classify.classifier import CLASSES, classify

REGEX_CLASSES = frozenset(CLASSES)


@dataclasses.dataclass(frozen=True, slots=True)
class Sample:
    """A captured request to regenerate at every level."""

    sample_id: str
    endpoint: str
    task_class: str
    request: dict[str, Any]

    def instruction(self) -> str:
        """What the judge sees as the instruction (the conversation's last user text)."""
        if self.endpoint == "responses":
            return _last_user_item(self.request.get("input"))
        if self.endpoint != "chat":
            prompt = self.request.get("prompt")
            return prompt if isinstance(prompt, str) else json.dumps(prompt)
        for message in reversed(self.request.get("messages", [])):
            if message.get("role") == "user":
                content = message.get("content")
                if isinstance(content, str):
                    return content
                return " ".join(part.get("text", "") for part in content or []
                                if isinstance(part, dict))
        return ""


def _last_user_item(items: object) -> str:
    """A Responses input's last user message text (a plain string input is one)."""
    if isinstance(items, str):
        return items
    for item in reversed(items if isinstance(items, list) else []):
        if isinstance(item, dict) and item.get("role") == "user" and item.get(
                "type", "message") == "message":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(str(part.get("text", "")) for part in content or []
                            if isinstance(part, dict))
    return ""


def pick(connection: Connection, *, since: datetime, limit: int,
         rng: random.Random) -> list[str]:
    """Up to `limit` random sample ids captured since a time."""
    ids = [row[0] for row in connection.execute(
        select(prompt_samples.c.sample_id).where(prompt_samples.c.captured_at >= since))]
    rng.shuffle(ids)
    return sorted(ids[:limit])


def load(connection: Connection, sample_ids: list[str]) -> list[Sample]:
    """The samples still present (retention may have removed some), in the given order."""
    found = {row.sample_id: row for row in connection.execute(
        select(prompt_samples).where(prompt_samples.c.sample_id.in_(sample_ids)))}
    samples = [Sample(sid, found[sid].endpoint, found[sid].task_class or "",
                      json.loads(found[sid].request_json)) for sid in sample_ids if sid in found]
    # Verdicts are kept per regex class (the cold start's quality scores): a prompt captured
    # under a learned class is classified again here.
    return [s if s.task_class in REGEX_CLASSES else
            dataclasses.replace(s, task_class=classify(s.instruction())) for s in samples]


def delete_expired(connection: Connection, now: datetime, retention: timedelta) -> int:
    """Delete captured prompts, and stored answers of finished runs, past retention."""
    cutoff = now - retention
    removed = connection.execute(
        delete(prompt_samples).where(prompt_samples.c.captured_at < cutoff)).rowcount
    finished = select(evaluations.c.evaluation_id).where(evaluations.c.started_at < cutoff)
    connection.execute(delete(evaluation_answers).where(
        evaluation_answers.c.evaluation_id.in_(finished)))
    return int(removed or 0)
