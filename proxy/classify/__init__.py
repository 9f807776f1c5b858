"""Task classes: a cheap, pure classification of prompts by their own features."""
