"""The local journal: rows survive a SIGKILL, live owners keep theirs, the writer empties it."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from proxy.accounting import journal as journal_module
from proxy.accounting.db import make_engine
from proxy.accounting.journal import Journal
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import FIELDS, LedgerRow, journal_line
from proxy.accounting.spill import SpillFile
from proxy.accounting.tables import requests as requests_table

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

WRITER_SCRIPT = textwrap.dedent("""
    import sys, time
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from proxy.accounting.journal import Journal
    from proxy.accounting.record import LedgerRow

    directory, count, segment_rows = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    journal = Journal(directory, segment_rows=segment_rows)
    journal.open()
    t0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for i in range(count):
        journal.append(LedgerRow(request_id=f"killed-{i}", created_at=t0 + timedelta(seconds=i),
                                 endpoint="chat", pool="p", prompt_tokens=i,
                                 completion_tokens=2 * i, energy_j=1.5 * i,
                                 served_at=t0, ended_at=t0 + timedelta(seconds=i + 1)))
        journal.wait_for_files()  # each next segment made ahead: rotations at segment_rows
    print("ready", flush=True)
    time.sleep(60)
""")


def row(index: int, prefix: str = "r") -> LedgerRow:
    return LedgerRow(request_id=f"{prefix}-{index}", created_at=T0 + timedelta(seconds=index),
                     endpoint="chat", pool="p", prompt_tokens=index, completion_tokens=2 * index,
                     energy_j=1.5 * index, served_at=T0,
                     ended_at=T0 + timedelta(seconds=index + 1))


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(template_db: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "ledger.db"
    shutil.copy(template_db, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def writer(engine: Engine, tmp_path: Path, journal: Journal | None, *,
           retry_interval_s: float = 5.0, spill: Path | None = None) -> LedgerWriter:
    return LedgerWriter(engine, SpillFile(spill or tmp_path / "spill" / "ledger.jsonl"), journal,
                        queue_size=100, batch_size=7, retry_interval_s=retry_interval_s)


def db_rows(engine: Engine) -> dict[str, tuple[int | None, int | None, float | None]]:
    with engine.connect() as connection:
        return {r.request_id: (r.prompt_tokens, r.completion_tokens, r.energy_j)
                for r in connection.execute(select(requests_table))}


def start_writer_process(directory: Path, count: int, segment_rows: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(directory), str(count), str(segment_rows)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    return process


def kill(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    if process.stdout is not None:
        process.stdout.close()


def test_rows_of_a_killed_process_are_replayed_and_its_files_removed(
        engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    process = start_writer_process(directory, count=25, segment_rows=10)
    try:
        dead_owner_files = sorted(p.name for p in directory.iterdir())
        assert len([n for n in dead_owner_files if n.endswith(".jsonl")]) == 3
        assert len([n for n in dead_owner_files if n.endswith(".spare")]) == 1
        # While it lives, nobody adopts its segments.
        live = Journal(directory)
        live.open()
        assert asyncio.run(writer(engine, tmp_path, live).replay_journal()) == 0
        assert db_rows(engine) == {}
        assert all((directory / name).exists() for name in dead_owner_files)
    finally:
        kill(process)

    assert asyncio.run(writer(engine, tmp_path, live).replay_journal()) == 25
    written = db_rows(engine)
    assert written == {f"killed-{i}": (i, 2 * i, 1.5 * i) for i in range(25)}
    assert not any((directory / name).exists() for name in dead_owner_files)
    # Only the live owner's files are left: its lock, its open segment and the spare its
    # thread makes ahead (the dead owner's spare, never written, went with its segments).
    live.wait_for_files()
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [f"{live.owner}.lock", f"{live.owner}.1.jsonl", f"{live.owner}.spare"])
    # Replaying again (another process starting) finds nothing and duplicates nothing.
    again = Journal(directory)
    again.open()
    assert asyncio.run(writer(engine, tmp_path, again).replay_journal()) == 0
    assert db_rows(engine) == written
    again.close(all_written=True)
    live.close(all_written=True)
    assert list(directory.iterdir()) == []


def test_a_live_owner_in_this_process_is_not_adopted(engine: Engine, tmp_path: Path) -> None:
    """flock is per open file description: a second Journal here sees the first as alive."""
    directory = tmp_path / "journal"
    first = Journal(directory)
    first.open()
    for i in range(3):
        first.append(row(i))
    second = Journal(directory)
    second.open()
    assert list(second.orphans()) == []
    assert asyncio.run(writer(engine, tmp_path, second).replay_journal()) == 0
    assert (directory / f"{first.owner}.1.jsonl").exists()
    assert (directory / f"{first.owner}.lock").exists()
    # Once the first lets go of its lock (as its death would), its rows are adopted.
    first.close(all_written=False)
    assert asyncio.run(writer(engine, tmp_path, second).replay_journal()) == 3
    assert set(db_rows(engine)) == {"r-0", "r-1", "r-2"}
    assert not (directory / f"{first.owner}.lock").exists()
    second.close(all_written=True)


def test_segments_rotate_and_release_drops_only_covered_closed_ones(tmp_path: Path) -> None:
    journal = Journal(tmp_path, segment_rows=3)
    journal.open()

    def append(index: int) -> int:
        sequence = journal.append(row(index))
        journal.wait_for_files()  # the spare ready before the next row: a rotation on time
        return sequence

    sequences = [append(i) for i in range(10)]
    assert sequences == list(range(1, 11))

    def segments() -> list[int]:
        return sorted(int(p.name.split(".")[1]) for p in tmp_path.glob(f"{journal.owner}.*.jsonl"))

    assert segments() == [1, 2, 3, 4]  # 1-3, 4-6, 7-9, 10 (open)
    assert [r.request_id for r in Journal.read(tmp_path / f"{journal.owner}.2.jsonl")] == [
        "r-3", "r-4", "r-5"]
    journal.release(5)  # segment 2 (rows 4-6) still holds an unwritten row
    assert segments() == [2, 3, 4]
    journal.release(6)
    assert segments() == [3, 4]
    journal.release(1_000)  # the open segment stays, whatever the sequence
    assert segments() == [4]
    append(10)
    append(11)
    append(12)  # rotates: segment 4 now holds 10, 11, 12 -> closed at 12
    assert segments() == [4, 5]
    journal.release(11)
    assert segments() == [4, 5]
    journal.release(12)
    assert segments() == [5]
    journal.close(all_written=True)
    assert list(tmp_path.iterdir()) == []


def test_the_disk_work_of_a_rotation_is_done_by_the_journals_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing a full segment and making the next took 7 ms of disk work on the loop at each
    rotation (every request in flight waited); a rotation now only renames the spare."""
    calls: list[tuple[str, int]] = []
    for name in ("posix_fallocate", "fsync", "ftruncate"):
        real = getattr(os, name)

        def recorded(*args: object, _name: str = name, _real: object = real) -> object:
            calls.append((_name, threading.get_ident()))
            return _real(*args)  # type: ignore[operator]
        monkeypatch.setattr(os, name, recorded)
    journal = Journal(tmp_path, segment_rows=3)
    journal.open()
    journal.wait_for_files()
    main = threading.get_ident()
    assert [name for name, _ in calls] == ["posix_fallocate"] * 2
    assert calls[0][1] == main != calls[1][1]  # the first segment here, the spare there
    calls.clear()
    for i in range(10):  # three rotations
        journal.append(row(i))
        journal.wait_for_files()
    assert sorted({name for name, _ in calls}) == ["fsync", "ftruncate", "posix_fallocate"]
    assert main not in {thread for _, thread in calls}
    assert [name for name, _ in calls].count("posix_fallocate") == 3  # one spare per rotation
    for segment, ids in ((1, ["r-0", "r-1", "r-2"]), (3, ["r-6", "r-7", "r-8"]), (4, ["r-9"])):
        path = tmp_path / f"{journal.owner}.{segment}.jsonl"
        assert [r.request_id for r in Journal.read(path)] == ids
    # A full segment is trimmed to its rows; the open one and the spare stay reserved.
    assert (tmp_path / f"{journal.owner}.1.jsonl").stat().st_size < 4096
    assert (tmp_path / f"{journal.owner}.spare").stat().st_size == journal_module.SEGMENT_BYTES
    journal.close(all_written=True)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_keeps_rows_in_the_open_segment_until_its_bytes_run_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The row count is a soft limit: with no spare (the thread could not make one: a full
    disk) rows go on into the open segment's reserved bytes while the thread tries again. Only
    when those run out does the rotation make a segment itself, and its error reaches the
    caller (`LedgerWriter.submit` then counts a journal error; the row still goes on)."""
    real = os.posix_fallocate
    full = threading.Event()

    def fallocate(fd: int, offset: int, length: int) -> None:
        if full.is_set():
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)
    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    monkeypatch.setattr(journal_module, "SPARE_RETRY_S", 0.0)
    header = len(json.dumps({"fields": list(FIELDS)})) + 1
    line = len(journal_line(row(0)))
    journal = Journal(tmp_path, segment_rows=2, segment_bytes=header + 6 * line + line // 2)
    journal.open()
    journal.wait_for_files()
    journal.append(row(0))
    journal.append(row(1))
    full.set()
    journal.append(row(2))  # rotates onto the spare made before the disk filled
    journal.wait_for_files()  # the next spare failed in the thread
    assert not (tmp_path / f"{journal.owner}.spare").exists()
    for i in range(3, 8):  # past segment_rows: into segment 2's reserved bytes (6 rows' worth)
        assert journal.append(row(i)) == i + 1
        journal.wait_for_files()  # each one a retry in the thread, failing again
    assert not (tmp_path / f"{journal.owner}.spare").exists()
    with pytest.raises(OSError) as raised:
        journal.append(row(8))  # no byte left: the rotation makes the segment here, and fails
    assert raised.value.errno == errno.ENOSPC
    full.clear()
    assert journal.append(row(8)) == 9  # made here now; the failed call took no sequence
    journal.append(row(9))
    journal.wait_for_files()
    assert (tmp_path / f"{journal.owner}.spare").exists()  # and the thread makes spares again
    by_segment = {int(path.name.split(".")[1]): [r.request_id for r in Journal.read(path)]
                  for path in tmp_path.glob(f"{journal.owner}.*.jsonl")}
    assert by_segment == {1: ["r-0", "r-1"], 2: [f"r-{i}" for i in range(2, 8)],
                          3: ["r-8", "r-9"]}
    journal.close(all_written=True)
    assert list(tmp_path.iterdir()) == []


def test_a_dead_owners_spare_is_read_too(engine: Engine, tmp_path: Path) -> None:
    """A rename is durable only once the directory is synced: after a crash a segment's rows
    could be left under the spare's name, so replay reads the spare as a segment."""
    directory = tmp_path / "journal"
    directory.mkdir()
    (directory / "4242-deadbeef.lock").touch()
    header = json.dumps({"fields": list(FIELDS)}) + "\n"
    (directory / "4242-deadbeef.1.jsonl").write_bytes(
        header.encode() + journal_line(row(0)) + b"\x00" * 64)
    (directory / "4242-deadbeef.spare").write_bytes(
        header.encode() + journal_line(row(1)) + b"\x00" * 64)
    journal = Journal(directory)
    journal.open()
    assert asyncio.run(writer(engine, tmp_path, journal).replay_journal()) == 2
    assert set(db_rows(engine)) == {"r-0", "r-1"}
    assert not any(p.name.startswith("4242-deadbeef") for p in directory.iterdir())
    journal.close(all_written=True)


def test_a_journal_line_reads_back_as_the_row_it_was() -> None:
    """Encoded by pydantic's serialiser (#16), a line parses as the standard library's
    encoding of the same values did: NaN and infinities, tiny floats, non-ASCII text."""
    odd = dataclasses.replace(
        row(3), energy_j=float("nan"), operational_g_co2e=float("inf"), embodied_g_co2e=1e-05,
        requested_model="modèle-Ω", error_message="quote \" backslash \\ tab \t nul \x00",
        captured_request='{"messages": [{"role": "user", "content": "é"}]}')
    line = journal_line(odd)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and b"\x00" not in line
    values = json.loads(line)
    expected = json.loads(json.dumps([v.isoformat() if isinstance(v, datetime) else v
                                      for v in (getattr(odd, name) for name in FIELDS)]))
    assert values[FIELDS.index("energy_j")] != values[FIELDS.index("energy_j")]  # NaN
    nan = FIELDS.index("energy_j")
    assert values[:nan] + values[nan + 1:] == expected[:nan] + expected[nan + 1:]


def test_a_row_with_unicode_line_separators_is_replayed_whole(
        engine: Engine, tmp_path: Path) -> None:
    """U+2028, U+2029 and NEL are line breaks to `str.splitlines` but plain characters in a
    JSON string: a client's model name holding one must not cut its row's line in two."""
    directory = tmp_path / "journal"
    directory.mkdir()
    (directory / "4242-deadbeef.lock").touch()
    header = json.dumps({"fields": list(FIELDS)}) + "\n"
    strange = dataclasses.replace(row(0), requested_model="a\u2028b\u2029c\x85d")
    (directory / "4242-deadbeef.1.jsonl").write_bytes(
        header.encode() + journal_line(strange) + journal_line(row(1)) + b"\x00" * 64)
    [first, second] = Journal.read(directory / "4242-deadbeef.1.jsonl")
    assert first.requested_model == "a\u2028b\u2029c\x85d" and second.request_id == "r-1"
    journal = Journal(directory)
    journal.open()
    assert asyncio.run(writer(engine, tmp_path, journal).replay_journal()) == 2
    assert set(db_rows(engine)) == {"r-0", "r-1"}
    journal.close(all_written=True)


def test_a_torn_last_line_is_skipped(engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    directory.mkdir()
    lines = [json.dumps(row(i).as_json_values()) for i in range(2)]
    torn = json.dumps(row(2).as_json_values())[:40]
    segment = directory / "4242-deadbeef.1.jsonl"
    segment.write_text("\n".join([*lines, torn]))
    assert [r.request_id for r in Journal.read(segment)] == ["r-0", "r-1"]
    # A dead owner's torn segment replays what it can.
    (directory / "4242-deadbeef.lock").touch()
    journal = Journal(directory)
    journal.open()
    assert asyncio.run(writer(engine, tmp_path, journal).replay_journal()) == 2
    assert set(db_rows(engine)) == {"r-0", "r-1"}
    assert not segment.exists()
    journal.close(all_written=True)


def test_the_writer_empties_its_journal_once_every_row_is_written(
        engine: Engine, tmp_path: Path) -> None:
    directory = tmp_path / "journal"
    journal = Journal(directory, segment_rows=4)
    journal.open()
    ledger = writer(engine, tmp_path, journal)

    async def scenario() -> None:
        ledger.start()
        for i in range(30):
            ledger.submit(row(i))
        await ledger.aclose()

    asyncio.run(scenario())
    assert ledger.stats.written_rows == 30 and ledger.stats.dropped_rows == 0
    assert set(db_rows(engine)) == {f"r-{i}" for i in range(30)}
    assert list(directory.iterdir()) == []


def test_pending_since_while_the_database_is_unreachable(tmp_path: Path) -> None:
    engine = make_engine("postgresql+psycopg://x@127.0.0.1:1/db", connect_args={
        "connect_timeout": 1})
    journal = Journal(tmp_path / "journal")
    journal.open()
    ledger = writer(engine, tmp_path, journal)

    async def scenario() -> None:
        ledger.start()
        assert ledger.pending_since() is None
        ledger.submit(row(5))
        ledger.submit(row(3))  # arrived earlier (created_at is the arrival)
        ledger.submit(row(8))
        assert ledger.pending_since() == T0 + timedelta(seconds=3)
        await ledger.flush()  # the database refused: the rows are spilled
        assert not ledger.stats.database_up
        assert ledger.stats.spilled_rows == 3
        assert ledger.pending_since() == T0 + timedelta(seconds=3)
        await ledger.aclose()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
        journal.close(all_written=True)
    assert len(SpillFile.read(tmp_path / "spill" / "ledger.jsonl")) == 3


def test_pending_since_clears_once_spilled_rows_are_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)  # no schema yet: every insert fails until it is migrated
    ledger = writer(engine, tmp_path, None, retry_interval_s=0.05)

    async def scenario() -> None:
        ledger.start()
        ledger.submit(row(2))
        ledger.submit(row(1))
        assert ledger.pending_since() == T0 + timedelta(seconds=1)
        await ledger.flush()
        assert ledger.stats.spilled_rows == 2
        assert ledger.pending_since() == T0 + timedelta(seconds=1)
        await asyncio.to_thread(upgrade_to_head, url)
        for _ in range(100):  # the writer retries every 50 ms
            if ledger.pending_since() is None:
                break
            await asyncio.sleep(0.02)
        assert ledger.pending_since() is None
        ledger.submit(row(9))
        assert ledger.pending_since() == T0 + timedelta(seconds=9)
        await ledger.flush()
        assert ledger.pending_since() is None
        await ledger.aclose()

    try:
        asyncio.run(scenario())
        assert set(db_rows(engine)) == {"r-1", "r-2", "r-9"}
    finally:
        engine.dispose()


def test_a_row_neither_written_nor_spilled_stays_in_the_journal(tmp_path: Path) -> None:
    """LedgerWriter's promise: such a row is replayed at the next start, not lost."""
    url = f"sqlite:///{tmp_path / 'late.db'}"
    engine = make_engine(url)  # no schema yet: the first insert fails
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    directory = tmp_path / "journal"
    journal = Journal(directory, segment_rows=1)
    journal.open()
    ledger = writer(engine, tmp_path, journal, spill=blocker / "ledger.jsonl")

    async def scenario() -> None:
        ledger.start()
        ledger.submit(row(0, "lost"))
        await ledger.flush()
        assert ledger.stats.dropped_rows == 1  # the database refused, the spill file too
        await asyncio.to_thread(upgrade_to_head, url)
        ledger.submit(row(1))
        ledger.submit(row(2))
        await ledger.flush()
        assert ledger.stats.written_rows == 2
        await ledger.aclose()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
    kept = [r.request_id for path in directory.glob("*.jsonl") for r in Journal.read(path)]
    assert "lost-0" in kept
    assert os.path.exists(directory / f"{journal.owner}.lock")
