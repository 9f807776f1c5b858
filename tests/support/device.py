"""The device the worker tests compute on: `cpu` here and in CI; `scripts/gpu-check` sets
`SPROUT_TEST_DEVICE=cuda` to run the same tests on an NVIDIA GPU."""

from __future__ import annotations

import os

TEST_DEVICE = os.environ.get("SPROUT_TEST_DEVICE", "cpu")
