"""Loading the Sprout authors' measurements: per-prompt CSVs, hourly CI exports, job trace.

Files are recognised by their columns, never by name: a dataset CSV has `instruction`,
`judged_best_level` and `energy_j_L0..`; an Electricity Maps export has a "(direct)" carbon
intensity column; the job trace has `job_name`. See ../shared/data/sprout/README.md.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from proxy.classify.classifier import CLASSES, classify


@dataclasses.dataclass
class Dataset:
    """The judged rows of one dataset: energies and times per level, verdict, task class."""

    name: str
    energy_j: np.ndarray  # (rows, levels)
    time_s: np.ndarray  # (rows, levels)
    best_level: np.ndarray  # (rows,)
    class_index: np.ndarray  # (rows,) index into CLASSES
    texts: list[str] = dataclasses.field(default_factory=list)  # (rows,) the instructions


@dataclasses.dataclass
class Region:
    """One zone's hourly direct carbon intensity for a year."""

    name: str
    ci_g_per_kwh: np.ndarray  # (8760,)


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle), [])


def load_datasets(data_dir: Path, names: list[str] | None) -> list[Dataset]:
    """Every dataset CSV in the folder (or those named)."""
    found = []
    for path in sorted(data_dir.glob("*.csv")):
        header = _csv_header(path)
        if not {"instruction", "judged_best_level", "energy_j_L0"} <= set(header):
            continue
        if names and path.stem not in names:
            continue
        levels = sorted(int(col.rsplit("L", 1)[1]) for col in header
                        if col.startswith("energy_j_L"))
        energy, time, best, classes, texts = [], [], [], [], []
        with path.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["judged_best_level"] == "":
                    continue
                try:
                    energy.append([float(row[f"energy_j_L{k}"]) for k in levels])
                    time.append([float(row[f"time_s_L{k}"]) for k in levels])
                except ValueError:
                    continue
                best.append(int(row["judged_best_level"]))
                classes.append(CLASSES.index(classify(row["instruction"])))
                texts.append(row["instruction"])
        found.append(Dataset(path.stem, np.array(energy), np.array(time), np.array(best),
                             np.array(classes), texts))
    return found


def load_regions(data_dir: Path, names: list[str] | None, column: str = "direct") -> list[Region]:
    """Every hourly Electricity Maps export in the folder (or those named)."""
    regions = []
    for path in sorted(data_dir.glob("*.csv")):
        header = _csv_header(path)
        wanted = [c for c in header if "Carbon Intensity" in c and f"({column})" in c]
        if not wanted or "Zone Id" not in header:
            continue
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        name = rows[0]["Zone Id"]
        if names and name not in names and path.stem not in names:
            continue
        regions.append(Region(name, np.array([float(r[wanted[0]]) for r in rows])))
    return regions


def load_job_trace(data_dir: Path) -> np.ndarray | None:
    """The hourly job counts that drive the dataset mix (a CSV with `job_name`)."""
    for path in sorted(data_dir.glob("*.csv")):
        if "job_name" in _csv_header(path):
            with path.open(newline="", encoding="utf-8") as handle:
                return np.array([float(r["job_name"]) for r in csv.DictReader(handle)])
    return None
