from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.errors import OperationError
from agent_smith.events import Outbox
from agent_smith.events.outbox import OutboxRecord, decode_records, encode_record, sent_count
from tests.events.helpers import captured_warnings


def rec(n: int) -> OutboxRecord:
    return OutboxRecord(f"swarm.events.task_done.a{n % 3}x", f"id-{n:05d}", f'{{"n":{n},"s":"é\\n"}}'.encode())


def test_records_survive_a_new_outbox_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1), rec(2)])
    box.append([rec(3)])
    box.close()
    again = Outbox(tmp_path)
    assert again.claim_orphans() == 3
    assert [r for s in again.segments() for r in s.pending] == [rec(1), rec(2), rec(3)]


def test_a_torn_last_record_ends_the_segment(tmp_path: Path) -> None:
    raw = encode_record(rec(1)) + encode_record(rec(2))
    assert decode_records(raw + encode_record(rec(3))[:-5]) == [rec(1), rec(2)]
    assert decode_records(raw + b"garbage without newline") == [rec(1), rec(2)]
    corrupted = bytearray(raw)
    corrupted[-4] ^= 0x01
    assert decode_records(bytes(corrupted)) == [rec(1)]


@given(st.lists(st.integers(0, 10_000), max_size=20), st.integers(0, 400))
def test_any_prefix_of_a_segment_decodes_to_a_prefix_of_its_records(numbers: list[int], cut: int) -> None:
    records = [rec(n) for n in numbers]
    raw = b"".join(encode_record(r) for r in records)
    decoded = decode_records(raw[:cut])
    assert decoded == records[: len(decoded)]


def test_flushed_records_are_not_sent_again_and_a_finished_segment_is_removed(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(n) for n in range(5)])
    (segment,) = box.segments()
    segment.mark_flushed(3)
    box.close()
    again = Outbox(tmp_path)
    assert again.claim_orphans() == 2
    (segment,) = again.segments()
    assert segment.pending == [rec(3), rec(4)]
    segment.mark_flushed(5)
    again.retire(segment)
    assert list(tmp_path.iterdir()) == []
    assert again.depth() == 0


def test_a_fully_flushed_orphan_is_cleaned_up_when_claimed(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1)])
    (segment,) = box.segments()
    segment.mark_flushed(1)
    box.close()
    assert Outbox(tmp_path).claim_orphans() == 0
    assert list(tmp_path.iterdir()) == []


def test_a_segment_held_by_a_live_publisher_is_not_claimed(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1)])
    # flock locks belong to the open file description: a second Outbox in this process is
    # refused exactly as another process would be.
    assert Outbox(tmp_path).claim_orphans() == 0
    box.close()
    assert Outbox(tmp_path).claim_orphans() == 1


def test_an_unreadable_cursor_means_resend_not_skip(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1), rec(2)])
    (segment,) = box.segments()
    segment.mark_flushed(1)
    segment.path.with_suffix(".done").write_text("not a number")
    box.close()
    assert Outbox(tmp_path).claim_orphans() == 2


def test_segment_files_are_private(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    box.append([rec(1)])
    (segment,) = box.segments()
    assert os.stat(segment.path).st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "outbox").st_mode & 0o777 == 0o700
    box.close()


def test_an_unwritable_outbox_is_an_operation_error(tmp_path: Path) -> None:
    blocker = tmp_path / "outbox"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(OperationError, match="cannot write the event outbox"):
        Outbox(blocker).append([rec(1)])


def test_the_own_segment_stays_locked_while_open(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1)])
    (segment,) = box.segments()
    with open(segment.path, "rb") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    box.close()


@given(st.integers(min_value=-(2**40), max_value=2**40), st.integers(min_value=0, max_value=10_000))
def test_what_counts_as_sent_is_never_more_than_the_segment_holds(cursor: int, records: int) -> None:
    sent = sent_count(cursor, records)
    assert 0 <= sent <= records
    assert sent == cursor or not 0 <= cursor <= records


def test_a_cursor_past_the_end_means_all_sent_and_is_said_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1), rec(2)])
    (segment,) = box.segments()
    segment.path.with_suffix(".done").write_text("5")
    box.close()
    with captured_warnings("agent_smith.events.outbox") as warnings:
        again = Outbox(tmp_path)
        assert again.claim_orphans() == 0
        assert again.depth() == 0
    assert [w.getMessage() for w in warnings] == [
        f"outbox segment {segment.path}: its cursor says 5 records were sent, but it holds 2 intact: taking 2 as sent"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_new_segment_is_never_an_orphan_to_a_claimer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another publisher sweeps for orphans at the worst moment: after the new segment's file
    exists, before its maker locks it. It must not take (and remove) that segment."""
    flock = fcntl.flock
    swept: list[int] = []

    def sweep_first(fd: int, operation: int) -> None:
        monkeypatch.undo()
        swept.append(Outbox(tmp_path).claim_orphans())
        flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", sweep_first)
    box = Outbox(tmp_path)
    box.append([rec(1)])
    assert swept == [0]
    assert [r for s in box.segments() for r in s.pending] == [rec(1)]
    (segment,) = box.segments()
    assert segment.path.name.startswith("seg-")
    assert sorted(p.name for p in tmp_path.iterdir()) == [segment.path.name]
    box.close()


def test_a_segment_its_maker_died_making_is_removed_once_it_is_old(tmp_path: Path) -> None:
    abandoned, fresh = tmp_path / "new-0001.log", tmp_path / "new-0002.log"
    abandoned.touch()
    fresh.touch()
    long_ago = time.time() - 3600
    os.utime(abandoned, (long_ago, long_ago))
    assert Outbox(tmp_path).claim_orphans() == 0
    # One being made right now (its maker about to lock and rename it) is left alone.
    assert sorted(p.name for p in tmp_path.iterdir()) == [fresh.name]


def test_a_new_segment_s_name_is_made_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fsync = os.fsync
    synced: list[tuple[int, int]] = []

    def recording(fd: int) -> None:
        info = os.fstat(fd)
        synced.append((info.st_dev, info.st_ino))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording)
    box = Outbox(tmp_path / "outbox")
    box.append([rec(1)])
    monkeypatch.undo()
    directory = os.stat(tmp_path / "outbox")
    (segment,) = box.segments()
    named = os.stat(segment.path)
    assert (directory.st_dev, directory.st_ino) in synced
    # Before the records' own fsync, so before any caller is told they are kept.
    assert synced.index((directory.st_dev, directory.st_ino)) < synced.index((named.st_dev, named.st_ino))
    box.close()


def test_a_segment_left_torn_by_a_failed_append_takes_no_more_and_is_still_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write cut short by a full disk, and a truncate back that fails as well: what follows a
    tear is unreadable, so the next records go to a new segment, and the torn one keeps what it
    held before the failed write."""
    box = Outbox(tmp_path)
    box.append([rec(1)])
    write = os.write

    def cut_short(fd: int, data: bytes) -> int:
        write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    def failing(fd: int, length: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "write", cut_short)
    monkeypatch.setattr(os, "ftruncate", failing)
    with pytest.raises(OperationError, match=r"No space left on device$"):
        box.append([rec(2)])
    monkeypatch.undo()
    box.append([rec(3)])
    assert [[r.msg_id for r in s.pending] for s in box.segments()] == [["id-00001"], ["id-00003"]]
    box.close()
    again = Outbox(tmp_path)
    assert again.claim_orphans() == 2
    assert [r.msg_id for s in again.segments() for r in s.pending] == ["id-00001", "id-00003"]
    again.close()


def test_a_cursor_that_cannot_be_saved_is_said_once_and_sending_goes_on(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.append([rec(1), rec(2)])
    (segment,) = box.segments()
    # A directory with something in it cannot be replaced by the cursor file: its write fails.
    (segment.path.with_suffix(".done") / "blocked").mkdir(parents=True)
    with captured_warnings("agent_smith.events") as logged:
        segment.mark_flushed(1)
        segment.mark_flushed(2)
    assert segment.flushed == 2
    assert [r.getMessage() for r in logged] == [
        f"outbox segment {segment.path}: cannot save how much of it was sent (Is a directory)"
    ]
    box.close()
