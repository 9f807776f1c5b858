"""Journal: a local append-only file of finished rows, so a killed process loses none.

`LedgerWriter.submit` appends each row here before the row is queued for the database, and
before the answer's last bytes reach the client. A segment is a file mapped into memory
(`mmap`, shared): appending is a memory copy into the kernel's page cache, with no system call
(a `write(2)` would release the interpreter lock on every request, and wait for it back while
the ledger's thread holds it). The pages belong to the file, so the row survives a SIGKILL or
OOM kill of the process as long as the machine stays up. The writer syncs the mapping to disk
about once a second, so a machine crash can lose at most that last second of rows.

Files are segments named `<owner>.<n>.jsonl`; each process holds an exclusive `flock` on
`<owner>.lock` while it lives. A segment is deleted once every row in it is in the database
(or the spill file). At start a process adopts the segments of owners whose lock is free
(they died) and replays them idempotently, so `serve --workers N` processes sharing `var/`,
and a restarted replica, recover each other's rows.

Closing a full segment (writing its pages out, trimming it) and opening the next (reserving
16 MiB, mapping it) took 7 ms together at 10,000 rows a second, 17-23 ms after a burst
(`bench/journal_rotation.py`). On the loop every request in flight would wait that long, once
per `segment_rows` rows, so a thread of the journal's own does both: it keeps the next segment
ready as `<owner>.spare`, and a full segment is swapped for it with a rename.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fcntl
import json
import logging
import mmap
import os
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

from proxy.accounting.record import FIELDS, LedgerRow, from_journal, journal_line

log = logging.getLogger(__name__)

SEGMENT_ROWS = 20_000
SEGMENT_BYTES = 16 * 1024 * 1024  # reserved on disk; trimmed to its length when closed


@dataclasses.dataclass(slots=True)
class _Segment:
    """A reserved, mapped file, its header written: the open segment or the spare."""

    path: Path
    fd: int
    map: mmap.mmap
    offset: int


class Journal:
    """One process's journal; `append` returns the row's sequence number."""

    def __init__(self, directory: Path, *, segment_rows: int = SEGMENT_ROWS,
                 segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._segment_rows = segment_rows
        self._segment_bytes = segment_bytes
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._offset = 0
        self._segment = 0
        # The disk work of opening and closing segments, off the request path (see above).
        self._files: concurrent.futures.ThreadPoolExecutor | None = None
        self._spare: concurrent.futures.Future[_Segment] | None = None
        self._segment_count = 0
        self._seq = 0
        self._closed: list[tuple[Path, int]] = []  # full segments and their last sequence
        self._current: Path | None = None
        self._sync_lock = threading.Lock()

    def open(self) -> None:
        """Take this owner's lock and start the first segment."""
        self.directory.mkdir(parents=True, exist_ok=True)
        # Locked under a name `orphans` does not look at, then renamed: no other process can
        # take a new owner's lock for a dead one's in between.
        pending = self.directory / f"{self.owner}.lock-new"
        self._lock_fd = os.open(pending, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(pending, self.directory / f"{self.owner}.lock")
        self._rotate()

    def _rotate(self) -> None:
        """Put the spare segment in place (made here only if it is missing or failed)."""
        segment = self._take_spare()
        if segment is None:
            segment = self._make_segment()  # the first one, or the thread could not make it
        self._segment += 1
        path = self.directory / f"{self.owner}.{self._segment}.jsonl"
        try:
            os.rename(segment.path, path)
        except OSError:
            self._segment -= 1
            self._discard(segment)
            raise
        if self._fd is not None and self._current is not None and self._map is not None:
            self._closed.append((self._current, self._seq))
            finishing = _Segment(self._current, self._fd, self._map, self._offset)
            assert self._files is not None
            self._files.submit(self._finish, finishing)
        self._current, self._fd, self._map = path, segment.fd, segment.map
        self._offset = segment.offset
        self._segment_count = 0
        self._prepare_spare()

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._files is None:
            self._files = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="journal-files")
        return self._files

    def wait_for_files(self) -> None:
        """Block until the thread has made the spare and finished every full segment."""
        if self._files is not None:
            self._files.submit(lambda: None).result()

    def _prepare_spare(self) -> None:
        self._spare = self._executor().submit(self._make_segment)

    def _take_spare(self) -> _Segment | None:
        """The spare, once made; waits for one being made (it is nearly done by then)."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            return spare.result()
        except OSError as exc:  # a full disk, say: try again here, where the caller sees it
            log.warning("journal: the next segment could not be made ahead (%s)", exc)
            return None

    def _make_segment(self) -> _Segment:
        """Reserve, map and head a new file, named as the spare (any thread)."""
        path = self.directory / f"{self.owner}.spare"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            try:  # reserve the blocks now: a full disk is an OSError here, never a SIGBUS later
                os.posix_fallocate(fd, 0, self._segment_bytes)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
                os.ftruncate(fd, self._segment_bytes)
            mapped = mmap.mmap(fd, self._segment_bytes, mmap.MAP_SHARED,
                               mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        # Rows are arrays in this header's field order, so a newer version can read them.
        header = (json.dumps({"fields": list(FIELDS)}) + "\n").encode()
        mapped[:len(header)] = header
        return _Segment(path, fd, mapped, len(header))

    def _finish(self, segment: _Segment) -> None:
        """Write a full segment's pages out, unmap it and trim the file (any thread)."""
        with self._sync_lock:
            # fsync, not `mmap.flush`: both write the mapped pages out (they are the file's
            # pages), but `flush` holds the interpreter lock throughout, stopping the loop.
            with contextlib.suppress(OSError):
                os.fsync(segment.fd)
            segment.map.close()
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.offset)
            os.close(segment.fd)

    @staticmethod
    def _discard(segment: _Segment) -> None:
        segment.map.close()
        os.close(segment.fd)
        segment.path.unlink(missing_ok=True)

    def _put(self, data: bytes) -> None:
        assert self._map is not None
        end = self._offset + len(data)
        self._map[self._offset:end] = data
        self._offset = end

    def _close_segment(self) -> None:
        """Finish the open segment here, once the thread has done its work; drop the spare."""
        if self._files is not None:
            self._files.shutdown(wait=True)
            self._files = None
        spare = self._take_spare()
        if spare is not None:
            self._discard(spare)
        if self._map is not None and self._fd is not None and self._current is not None:
            self._finish(_Segment(self._current, self._fd, self._map, self._offset))
        self._map = None
        self._fd = None

    def append(self, row: LedgerRow) -> int:
        """Copy one row into the mapped segment (request path: no system call).

        Raises OSError if a new segment cannot be made (a full disk); the next call tries again.
        """
        return self.append_line(journal_line(row))

    def append_line(self, line: bytes) -> int:
        """`append` for a row already encoded by `journal_line` (the ledger reuses the bytes)."""
        if (self._map is None or self._segment_count >= self._segment_rows
                or self._offset + len(line) > self._segment_bytes):
            if self._lock_fd is None:
                raise RuntimeError("journal is not open")
            self._rotate()
        self._put(line)
        self._segment_count += 1
        self._seq += 1
        return self._seq

    def sync(self) -> None:
        """Fsync the open segment (from a worker thread): bounds what a machine crash loses."""
        with self._sync_lock:
            fd = self._fd  # under the lock: `_finish` closes a full segment's under it too
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(fd)

    def release(self, seq: int) -> None:
        """Every row up to `seq` is in the database (or spilled): drop covered segments."""
        while self._closed and self._closed[0][1] <= seq:
            path, _ = self._closed.pop(0)
            path.unlink(missing_ok=True)

    def close(self, *, all_written: bool) -> None:
        """Close; with everything written, the segments and the lock go too."""
        self._close_segment()
        if all_written:
            for path, _ in self._closed:
                path.unlink(missing_ok=True)
            if self._current is not None:
                self._current.unlink(missing_ok=True)
            (self.directory / f"{self.owner}.lock").unlink(missing_ok=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def orphans(self) -> Iterator[tuple[str, list[Path]]]:
        """Segments of owners that died, each owner's lock held while the caller replays."""
        if not self.directory.exists():
            return
        for lock in sorted(self.directory.glob("*.lock")):
            owner = lock.stem
            if owner == self.owner:
                continue
            try:
                fd = os.open(lock, os.O_WRONLY)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # alive
                segments = sorted(self.directory.glob(f"{owner}.*.jsonl"),
                                  key=lambda p: int(p.name.split(".")[1]))
                yield owner, segments
            finally:
                os.close(fd)

    @staticmethod
    def forget(owner_dir: Path, owner: str, segments: list[Path]) -> None:
        """Delete a dead owner's replayed segments and its lock."""
        for path in segments:
            path.unlink(missing_ok=True)
        (owner_dir / f"{owner}.spare").unlink(missing_ok=True)  # made ahead, never written
        (owner_dir / f"{owner}.lock").unlink(missing_ok=True)

    @staticmethod
    def read(path: Path) -> list[LedgerRow]:
        """Rows of a segment; a torn last line (killed mid-write) is logged and skipped."""
        rows: list[LedgerRow] = []
        names: list[str] | None = None
        # A segment still mapped when its process died ends in zeros (JSON never holds a raw
        # NUL byte: it escapes it), and a copy cut short by the kill leaves a torn last line.
        text = path.read_bytes().split(b"\x00", 1)[0].decode("utf-8", "replace")
        if text:
            for number, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    document = json.loads(line)
                    if isinstance(document, dict) and "fields" in document:
                        names = list(document["fields"])
                    elif isinstance(document, list) and names is not None:
                        rows.append(from_journal(names, document))
                    else:
                        rows.append(LedgerRow.from_json_values(document))
                except (ValueError, TypeError, KeyError):
                    log.error("journal %s line %d is unreadable; skipped", path, number)
        return rows
