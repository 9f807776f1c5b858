"""Pools: groups of interchangeable backends that serve the same models."""
