"""The carbon-aware directive optimiser: LP formulation and the published Allocation."""
