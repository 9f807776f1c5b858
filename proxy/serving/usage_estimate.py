"""Labelled fallback token counts for when an upstream reports no `usage`."""

from __future__ import annotations

# About four characters per token for English BPE vocabularies (OpenAI's rule of thumb,
# "What are tokens and how to count them", help.openai.com). Rows using it are labelled.
CHARS_PER_TOKEN = 4.0


def tokens_from_chars(chars: int) -> int:
    """Estimated tokens for a text of `chars` characters (at least 1 for non-empty text)."""
    if chars <= 0:
        return 0
    return max(1, round(chars / CHARS_PER_TOKEN))
