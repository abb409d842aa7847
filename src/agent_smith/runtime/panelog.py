"""Reading the pane logs: terminal output made readable, and followed across rotations."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from agent_smith.runtime.session import chunk, chunk_numbers

# CSI (cursor moves, colours), OSC (titles, hyperlinks), and the other escapes: a final byte after
# any intermediate ones (ESC 7 and ESC 8 save and restore the cursor, ESC ( B picks a charset).
_ESCAPES = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[ -/]*[0-~]|[\x00-\x08\x0b-\x1f\x7f]"
)


# Moves along the line: forward by n (CSI n C), to column n (CSI n G), and line ends.
_MOVES = re.compile(rb"\x1b\[(\d*)([CG])|\n")
_WIDEST = 500


def readable(raw: bytes) -> str:
    """Pane output as plain text: CR as a line break, other escapes dropped, and the cursor moves
    that place words along a line as the spaces they stand for (claude writes "WARNING:" then
    "Loading" at column 12: without them, the words ran together)."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    out: list[str] = []
    column = start = 0
    for move in _MOVES.finditer(text):
        chunk = _ESCAPES.sub(b"", text[start : move.start()]).decode("utf-8", "replace")
        out.append(chunk)
        column += len(chunk)
        start = move.end()
        if move.group(0) == b"\n":
            out.append("\n")
            column = 0
            continue
        count = min(int(move.group(1) or 1), _WIDEST)
        # To a column behind the text would overwrite it on a screen: here, one space keeps words apart.
        pad = count if move.group(2) == b"C" else max(count - 1 - column, 1 if column else 0)
        out.append(" " * pad)
        column += pad
    out.append(_ESCAPES.sub(b"", text[start:]).decode("utf-8", "replace"))
    return "".join(out)


@dataclass
class Follower:
    """Reads what a pane's log (`log`, as `pane_log` names it) gained since the last call, chunk
    after chunk (`session.chunk`)."""

    log: Path
    _fh: IO[bytes] | None = field(default=None, init=False)
    _at: int = field(default=-1, init=False)  # the number of the chunk open
    _partial: bytes = field(default=b"", init=False)
    # (chunk number, size) of what the log held before: not read.
    _before: tuple[int, int] | None = field(default=None, init=False)

    def skip_what_is_there(self) -> None:
        """Read only what is appended from now on (the log holds an earlier run's output)."""
        numbers = chunk_numbers(self.log)
        if not numbers:
            return
        try:
            self._before = (numbers[-1], chunk(self.log, numbers[-1]).stat().st_size)
        except FileNotFoundError:
            return

    def read(self) -> bytes:
        """What was appended since the last call, as far as the end of one chunk: from the oldest
        chunk on, the first time (unless `skip_what_is_there`)."""
        # Listed before reading: a chunk seen newer then means the open one was complete (split
        # closes a chunk before it makes the next), so its end is read before moving on.
        numbers = chunk_numbers(self.log)
        if self._fh is None:
            first = self._before[0] if self._before is not None else 0
            if not self._open([n for n in numbers if n >= first]):
                return b""
        while self._fh is not None:
            newer = [n for n in numbers if n > self._at]
            data = self._fh.read()
            if not newer or not self._open(newer) or data:
                return data
        return b""

    def _open(self, numbers: list[int]) -> bool:
        """Open the first of the chunks `numbers` that is still there (the oldest may be pruned meanwhile)."""
        for number in numbers:
            try:
                fh = chunk(self.log, number).open("rb")
            except FileNotFoundError:
                continue
            self.close()
            self._fh, self._at = fh, number
            if self._before is not None and self._before[0] == number:
                fh.seek(self._before[1])
            self._before = None
            return True
        return False

    def lines(self) -> list[str]:
        """New lines, readable. A partial last line waits for its end, unless nothing
        followed it since the previous call (a shell prompt waits for input, unended)."""
        fresh = self.read()
        if not fresh and self._partial:
            head, self._partial = self._partial, b""
            return [line for line in readable(head).split("\n") if line.strip()]
        data = (self._partial + fresh).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        head, sep, tail = data.rpartition(b"\n")
        self._partial = tail
        if not sep:
            return []
        return [line for line in readable(head).split("\n") if line.strip()]

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class Streamer:
    """Copies new lines of several pane logs to one stream, each line prefixed with its source."""

    def __init__(self, sources: Sequence[tuple[str, Path]], write: Callable[[str], None]) -> None:
        """Made before the panes start: what the logs already hold (an earlier container's, on
        the same volume) is not this run's output, and is not copied again."""
        self._followers = [(prefix, Follower(path)) for prefix, path in sources]
        for _, follower in self._followers:
            follower.skip_what_is_there()
        self._write = write

    def pump(self) -> int:
        count = 0
        for prefix, follower in self._followers:
            for line in follower.lines():
                self._write(f"[{prefix}] {line}\n")
                count += 1
        return count

    def close(self) -> None:
        for _, follower in self._followers:
            follower.close()
