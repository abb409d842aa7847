from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.errors import OperationError
from agent_smith.events import Outbox
from agent_smith.events.outbox import OutboxRecord, decode_records, encode_record


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
