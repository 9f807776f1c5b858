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
16 MiB, mapping it) took 7 ms together at 10,000 rows a second (`bench/journal_rotation.py`),
17-23 ms when 20,000 rows came at once. On the loop every request in flight would wait that
long, once per `segment_rows` rows, so a thread of the journal's own does both: it keeps the
next segment ready as `<owner>.spare`, and a full segment is swapped for it with a rename.
`segment_rows` is a soft limit: while no spare is ready (or the thread could not make one,
on a full disk, and tries again) rows go on into the open segment's reserved bytes.
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
import time
from collections.abc import Iterator
from pathlib import Path

from proxy.accounting.record import FIELDS, LedgerRow, from_journal, journal_line

log = logging.getLogger(__name__)

SEGMENT_ROWS = 20_000
SEGMENT_BYTES = 16 * 1024 * 1024  # reserved on disk; trimmed to its length when closed
SPARE_RETRY_S = 1.0  # how often the thread tries again to make a spare it could not


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("journal: a full segment could not be finished: %r", exc)


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
        self._spare_retry_at = 0.0
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
        """Put the spare segment in place (made here only if there is none to take)."""
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
        full = None
        if self._fd is not None and self._current is not None and self._map is not None:
            self._closed.append((self._current, self._seq))
            full = _Segment(self._current, self._fd, self._map, self._offset)
        # The new segment is published before the thread may close the full one's fd, so
        # `sync` never takes a closed (or reused) fd number for the open segment's.
        self._current, self._fd, self._map = path, segment.fd, segment.map
        self._offset = segment.offset
        self._segment_count = 0
        self._prepare_spare()  # first: the next rotation must not wait behind an fsync
        if full is not None:
            self._executor().submit(self._finish, full).add_done_callback(_log_failure)

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

    def _spare_ready(self) -> bool:
        return self._spare is not None and self._spare.done()

    def _retry_failed_spare(self) -> bool:
        """Whether the thread could not make the spare (a full disk); if so it tries again.

        At most once every `SPARE_RETRY_S`; meanwhile the open segment takes rows until its
        reserved bytes run out.
        """
        assert self._spare is not None
        exc = self._spare.exception()
        if exc is None:
            return False
        now = time.monotonic()
        if now >= self._spare_retry_at:
            log.warning("journal: the next segment could not be made ahead (%s); retrying", exc)
            self._spare_retry_at = now + SPARE_RETRY_S
            self._prepare_spare()
        return True

    def _take_spare(self) -> _Segment | None:
        """The spare the thread made (waiting for it if it is still being made), or None."""
        spare, self._spare = self._spare, None
        if spare is None:
            return None
        try:
            return spare.result()
        except OSError as exc:  # a full disk, say: made again here, where the caller sees it
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
        # fsync, not `mmap.flush`: both write the mapped pages out (they are the file's pages),
        # but `flush` holds the interpreter lock throughout, stopping the loop.
        with contextlib.suppress(OSError):
            os.fsync(segment.fd)
        segment.map.close()
        with contextlib.suppress(OSError):
            os.ftruncate(segment.fd, segment.offset)
        with self._sync_lock:  # not while `sync` may still be using this fd number
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
        with self._sync_lock:  # detached first: `sync` then finds no fd, never a closed one
            current, fd, mapped = self._current, self._fd, self._map
            self._fd = None
            self._map = None
        if mapped is not None and fd is not None and current is not None:
            self._finish(_Segment(current, fd, mapped, self._offset))

    def append(self, row: LedgerRow) -> int:
        """Copy one row into the mapped segment (request path: no system call).

        Raises OSError if a new segment cannot be made (a full disk); the next call tries again.
        """
        return self.append_line(journal_line(row))

    def append_line(self, line: bytes) -> int:
        """`append` for a row already encoded by `journal_line` (the ledger reuses the bytes)."""
        if self._map is None or self._offset + len(line) > self._segment_bytes:
            if self._lock_fd is None:
                raise RuntimeError("journal is not open")
            self._rotate()
        elif (self._segment_count >= self._segment_rows and self._spare_ready()
              and not self._retry_failed_spare()):
            # The row count is a soft limit: until the thread has a spare ready, rows go on
            # into the open segment's reserved bytes (made ahead, not here on the loop).
            self._rotate()
        self._put(line)
        self._segment_count += 1
        self._seq += 1
        return self._seq

    def sync(self) -> None:
        """Fsync the open segment (from a worker thread): bounds what a machine crash loses."""
        with self._sync_lock:
            fd = self._fd  # under the lock: a full segment's fd is closed under it
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
                # The spare holds no row unless its rename into place was lost in a crash
                # (a rename is not durable until the directory is synced): read it too.
                spare = self.directory / f"{owner}.spare"
                yield owner, [*segments, spare] if spare.exists() else segments
            finally:
                os.close(fd)

    @staticmethod
    def forget(owner_dir: Path, owner: str, segments: list[Path]) -> None:
        """Delete a dead owner's replayed segments and its lock."""
        for path in segments:
            path.unlink(missing_ok=True)
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
            # Lines end in "\n" only: `str.splitlines` would also cut at U+2028, U+2029 and
            # NEL, which JSON leaves unescaped inside strings (a client's model name, say).
            for number, line in enumerate(text.split("\n"), start=1):
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
