"""The durable outbox: where events wait, fsynced, while NATS is unreachable.

Layout: one append-only segment per publisher process, ``seg-<id>.log``,
and beside it ``seg-<id>.done``, the count of its records already stored in
the stream (written atomically). A record is one line, ``<crc32> <json>``;
a line torn by a crash fails its checksum and ends the segment — it was
never fsynced, so no caller was told it was kept.

A publisher holds an exclusive `flock` on the segment it writes. A segment
nobody holds belongs to a publisher that died; any publisher may claim it
and flush it, so a killed publisher's events are sent by the next one. A new
segment is therefore made under another name (``new-<id>.log``), locked, and
only then renamed: under its final name it would be an empty orphan for an
instant, which a claimer would lock and remove.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from agent_smith.errors import OperationError
from agent_smith.events.ids import new_id
from agent_smith.fsutil import fsync_dir, write_atomic

log = logging.getLogger(__name__)

# Records NATS refused as such, kept for a person to look at; never flushed again.
REFUSED = "refused.log"
# A segment still under its making name after this long (s) was never made: its maker died.
_ABANDONED_AFTER = 60.0


@dataclass(frozen=True)
class OutboxRecord:
    subject: str
    msg_id: str
    data: bytes


def encode_record(record: OutboxRecord) -> bytes:
    body = json.dumps(
        {"subject": record.subject, "id": record.msg_id, "data": record.data.decode()},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    return b"%08x " % zlib.crc32(body) + body + b"\n"


def decode_records(raw: bytes) -> list[OutboxRecord]:
    """Every intact record from the start of a segment, stopping at the first torn one."""
    records: list[OutboxRecord] = []
    for line in raw.split(b"\n")[:-1]:
        crc, _, body = line.partition(b" ")
        try:
            if int(crc, 16) != zlib.crc32(body):
                break
            item = json.loads(body)
            records.append(OutboxRecord(item["subject"], item["id"], item["data"].encode()))
        except (ValueError, KeyError, TypeError):
            break
    return records


class Segment:
    """One segment file, locked by this process for as long as it is open."""

    def __init__(self, path: Path, handle: IO[bytes]) -> None:
        self.path = path
        # Unbuffered: closing it never writes, so never fails on a full disk.
        self._handle = handle
        # Bytes of a failed append stayed in the file: a reader stops there, so nothing may follow.
        self.torn = False
        self._cursor_lags = False
        self.records = decode_records(path.read_bytes())
        cursor = _read_done(_done_path(path))
        self.flushed = sent_count(cursor, len(self.records))
        if self.flushed != cursor:
            log.warning(
                "outbox segment %s: its cursor says %d records were sent, but it holds %d intact: taking %d as sent",
                path,
                cursor,
                len(self.records),
                self.flushed,
            )

    @property
    def pending(self) -> list[OutboxRecord]:
        return self.records[self.flushed :]

    @property
    def pending_count(self) -> int:
        return len(self.records) - self.flushed

    def append(self, records: Sequence[OutboxRecord]) -> None:
        """Write and fsync all of `records`, or raise OSError leaving the file as it was."""
        fd = self._handle.fileno()
        end = os.lseek(fd, 0, os.SEEK_END)
        rest = memoryview(b"".join(encode_record(r) for r in records))
        try:
            while rest:
                rest = rest[os.write(fd, rest) :]
            os.fsync(fd)
        except OSError:
            # Whole records may be in before a full disk stops the write: their callers hear that
            # their events were not kept, so no part of them may be sent later.
            try:
                os.ftruncate(fd, end)
            except OSError:
                self.torn = True
            raise
        self.records.extend(records)

    def mark_flushed(self, count: int) -> None:
        self.flushed = count
        try:
            write_atomic(_done_path(self.path), str(count).encode(), 0o600)
        except OSError as exc:
            # A cursor on disk that lags means a resend after a crash (the stream drops a repeated
            # Nats-Msg-Id), never a loss: no reason to stop sending, or to fail anyone's event.
            if not self._cursor_lags:
                log.warning("outbox segment %s: cannot save how much of it was sent (%s)", self.path, exc.strerror)
                self._cursor_lags = True

    def remove(self) -> None:
        """Delete a fully flushed segment, then give up its lock."""
        with contextlib.suppress(FileNotFoundError):
            _done_path(self.path).unlink()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.close()

    def close(self) -> None:
        self._handle.close()


def sent_count(cursor: int, records: int) -> int:
    """How many of a segment's `records` count as sent, given its cursor (pure). A cursor past the
    end (the segment lost records after they were sent, or the file was edited) means all of
    them: taken as it is, it would make the pending count negative and the flush loop empty."""
    return max(0, min(cursor, records))


def _done_path(path: Path) -> Path:
    return path.with_suffix(".done")


def _read_done(path: Path) -> int:
    try:
        return int(path.read_text().strip() or "0")
    except FileNotFoundError:
        return 0
    except ValueError:
        # A cursor that cannot be read means "nothing known flushed": resending is safe (the
        # stream drops a repeated Nats-Msg-Id), skipping would lose events.
        return 0


def _lock(path: Path) -> Segment | None:
    """Claim an existing segment; None when another process holds it or removed it meanwhile."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return None
    handle = os.fdopen(fd, "ab+", buffering=0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    try:
        same = os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        # Another process flushed and deleted it between our open and our lock.
        handle.close()
        return None
    return Segment(path, handle)


def _create(directory: Path) -> Segment:
    """A new segment, locked before any claimer can see it, its name durable in `directory`."""
    segment_id = new_id()
    making = directory / f"new-{segment_id}.log"
    fd = os.open(making, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
    handle = os.fdopen(fd, "ab+", buffering=0)
    try:
        # Nobody else opens a new- file: this cannot block.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path = directory / f"seg-{segment_id}.log"
        os.rename(making, path)
        # Without it a power loss could leave acknowledged records in a file no directory lists.
        fsync_dir(directory)
    except BaseException:
        handle.close()
        with contextlib.suppress(FileNotFoundError):
            making.unlink()
        raise
    return Segment(path, handle)


class Outbox:
    """This process's segment plus any orphaned ones it claimed, flushed oldest first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._own: Segment | None = None
        self._claimed: list[Segment] = []

    def append(self, records: Sequence[OutboxRecord]) -> None:
        """Write and fsync; when this returns the records survive a crash of this process."""
        try:
            if self._own is None:
                self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._own = _create(self.directory)
            self._own.append(records)
        except OSError as exc:
            if self._own is not None and self._own.torn:
                # Still flushed from what it holds in memory; later appends go to a fresh segment.
                self._claimed.append(self._own)
                self._own = None
            raise OperationError(f"cannot write the event outbox in {self.directory}: {exc.strerror or exc}") from exc

    def claim_orphans(self) -> int:
        """Lock segments whose publisher is gone; return how many records they still hold."""
        if not self.directory.is_dir():
            return 0
        held = {s.path for s in self._claimed} | ({self._own.path} if self._own else set())
        # A process killed while it made a segment (between creating and renaming it) left it
        # empty under its making name; one that old is no one's any more.
        for making in self.directory.glob("new-*.log"):
            with contextlib.suppress(FileNotFoundError):
                if time.time() - making.stat().st_mtime > _ABANDONED_AFTER:
                    making.unlink()
        found = 0
        for path in sorted(self.directory.glob("seg-*.log")):
            if path in held:
                continue
            segment = _lock(path)
            if segment is None:
                continue
            if not segment.pending_count:
                segment.remove()
                continue
            self._claimed.append(segment)
            found += segment.pending_count
        return found

    def segments(self) -> Iterator[Segment]:
        """Segments with something to flush, oldest first (ids sort by creation time)."""
        ordered = sorted([*self._claimed, *([self._own] if self._own else [])], key=lambda s: s.path.name)
        yield from (s for s in ordered if s.pending_count)

    def depth(self) -> int:
        return sum(s.pending_count for s in self.segments())

    def set_aside(self, record: OutboxRecord, reason: str) -> Path:
        """Keep a record NATS refused in ``refused.log`` (fsynced, same format, then a line
        saying why), so that the segment's cursor may move past it; returns that file."""
        path = self.directory / REFUSED
        note = json.dumps({"refused": record.msg_id, "reason": reason}, ensure_ascii=False).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "ab") as handle:
                handle.write(encode_record(record) + b"# " + note + b"\n")
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise OperationError(f"cannot set aside refused event {record.msg_id} in {path}: {exc}") from exc
        return path

    def retire(self, segment: Segment) -> None:
        """Forget a segment whose records are all in the stream."""
        segment.remove()
        if segment is self._own:
            self._own = None
        else:
            self._claimed.remove(segment)

    def close(self) -> None:
        for segment in self._claimed:
            segment.close()
        self._claimed = []
        if self._own is not None:
            self._own.close()
            self._own = None
