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


# The C1 controls as UTF-8 decodes them (U+0080..U+009F): a UTF-8 terminal (xterm, VTE) reads
# U+009B as ESC [ and U+009D as OSC, so they go as the 7-bit escapes above do.
_C1 = dict.fromkeys(range(0x80, 0xA0))

# Moves along the line: forward by n (CSI n C), to column n (CSI n G), and line ends.
_MOVES = re.compile(rb"\x1b\[(\d*)([CG])|\n")
_WIDEST = 500
# The longest line streamed (in characters): one longer goes in pieces of this length, as
# container runtimes cut their log lines at 16 KiB.
LONGEST_LINE = 16 * 1024


def readable(raw: bytes) -> str:
    """Pane output as plain text: CR as a line break, other escapes dropped, and the cursor moves
    that place words along a line as the spaces they stand for (claude writes "WARNING:" then
    "Loading" at column 12: without them, the words ran together)."""
    text = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    out: list[str] = []
    column = start = 0
    for move in _MOVES.finditer(text):
        chunk = _ESCAPES.sub(b"", text[start : move.start()]).decode("utf-8", "replace").translate(_C1)
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
    out.append(_ESCAPES.sub(b"", text[start:]).decode("utf-8", "replace").translate(_C1))
    return "".join(out)


def _shown(raw: bytes) -> list[str]:
    """The lines of `raw` that show something, readable, each cut into pieces of LONGEST_LINE (pure)."""
    return [
        line[at : at + LONGEST_LINE]
        for line in readable(raw).split("\n")
        if line.strip()
        for at in range(0, len(line), LONGEST_LINE)
    ]


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
    # Chunks removed (`session.prune`) before this reader came to them: output it never read.
    lost: int = field(default=0, init=False)

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
            # Data first: a call returns one chunk's output only, so a gap (`lost`) is known
            # before the output after it.
            if data or not newer or not self._open(newer):
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
            previous = self._at if self._at >= 0 else self._before[0] if self._before is not None else number
            self.lost += max(number - previous - 1, 0)
            self._fh, self._at = fh, number
            if self._before is not None and self._before[0] == number:
                fh.seek(self._before[1])
            self._before = None
            return True
        return False

    def lines(self) -> list[str]:
        """New lines, readable. A partial last line waits for its end, unless nothing
        followed it since the previous call (a shell prompt waits for input, unended), or it
        grew to LONGEST_LINE (a line that never ends would otherwise never be shown, and be
        held whole in memory)."""
        fresh = self.read()
        return self._split(fresh) if fresh else self.rest()

    def remaining(self) -> list[str]:
        """Every line still to come, the partial last one included: for a pane that is gone,
        whose line will not end."""
        found: list[str] = []
        while fresh := self.read():
            found += self._split(fresh)
        return found + self.rest()

    def rest(self) -> list[str]:
        """The partial last line, as far as it came."""
        head, self._partial = self._partial, b""
        return _shown(head)

    def _split(self, fresh: bytes) -> list[str]:
        data = (self._partial + fresh).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        head, sep, self._partial = data.rpartition(b"\n")
        found = _shown(head) if sep else []
        return found + self.rest() if len(self._partial) >= LONGEST_LINE else found

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
        """Copy the lines the logs gained; how many. Where chunks were removed before they were
        copied (the stream's reader fell 60 MB behind), a line says so: nothing is lost unsaid."""
        return sum(self._copy(prefix, follower, follower.lines) for prefix, follower in self._followers)

    def finish(self) -> int:
        """Copy what is left, partial last lines included (the panes are gone), and close."""
        count = sum(self._copy(prefix, follower, follower.remaining) for prefix, follower in self._followers)
        self.close()
        return count

    def _copy(self, prefix: str, follower: Follower, take: Callable[[], list[str]]) -> int:
        lost = follower.lost
        lines = take()
        if follower.lost > lost:
            gone = follower.lost - lost
            self._write(
                f"[{prefix}] [agent-smith: {gone} chunk{'s' if gone > 1 else ''} of this pane's output "
                "removed before it was streamed: the stream's reader fell behind]\n"
            )
        for line in lines:
            self._write(f"[{prefix}] {line}\n")
        return len(lines)

    def close(self) -> None:
        for _, follower in self._followers:
            follower.close()
