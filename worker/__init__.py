"""sprout-worker: an OpenAI-compatible server for one Hugging Face causal LM."""
