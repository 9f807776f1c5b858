"""SpillFile: an append-only JSONL file that holds ledger rows while the database is down."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

from proxy.accounting.record import LedgerRow

log = logging.getLogger(__name__)


class SpillFile:
    """Rows are appended and fsynced; a replay takes the whole file aside atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replay_path = path.with_name(path.name + ".replaying")
        self._lock = threading.Lock()

    def append(self, rows: Sequence[LedgerRow]) -> None:
        """Append rows durably (called from the writer thread, or on queue overflow)."""
        if not rows:
            return
        text = "".join(json.dumps(row.as_json_values()) + "\n" for row in rows)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())

    def has_rows(self) -> bool:
        """Whether anything waits to be replayed."""
        return self.replay_path.exists() or (self.path.exists() and self.path.stat().st_size > 0)

    def take(self) -> Path | None:
        """Move pending rows aside for a replay; an unfinished earlier replay comes first."""
        with self._lock:
            if self.replay_path.exists():
                return self.replay_path
            if self.path.exists() and self.path.stat().st_size > 0:
                self.path.rename(self.replay_path)
                return self.replay_path
        return None

    @staticmethod
    def read(path: Path) -> list[LedgerRow]:
        """Rows of a taken file; a torn last line (crash mid-write) is logged and skipped."""
        rows: list[LedgerRow] = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(LedgerRow.from_json_values(json.loads(line)))
                except (ValueError, TypeError, KeyError):
                    log.error("spill file %s line %d is unreadable; skipped", path, number)
        return rows

    def pending_rows(self) -> int:
        """Rows waiting in the spill files (for health and metrics)."""
        total = 0
        for path in (self.replay_path, self.path):
            if path.exists():
                with path.open("rb") as handle:
                    total += sum(1 for line in handle if line.strip())
        return total

    def finish(self, path: Path) -> None:
        """Forget a taken file once every row in it is in the database."""
        with self._lock:
            path.unlink(missing_ok=True)
