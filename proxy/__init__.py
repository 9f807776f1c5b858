"""sprout-proxy: an OpenAI-compatible gateway that cuts and accounts for LLM carbon."""
