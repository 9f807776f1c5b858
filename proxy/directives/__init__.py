"""Sprout generation directives: catalogue, injection into requests, and client/key policy."""
