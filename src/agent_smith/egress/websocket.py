"""Scrub secrets out of the frames a WebSocket server sends, re-framing payloads whose length changed.

Pure: bytes in, bytes out. Extensions are never negotiated (the firewall strips
``Sec-WebSocket-Extensions`` both ways), so payloads are plain and the scrub can read
them; a frame with an extension bit set, or masked, ends the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from agent_smith.egress.policy import Scrubber

__all__ = ["ServerFrameScrubber", "upstream_cut"]

_CONTINUATION, _TEXT, _BINARY, _CLOSE = 0x0, 0x1, 0x2, 0x8
_MAX_FRAME = 1 << 31


def _frame(first: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", first, size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", first, 126, size)
    else:
        head = struct.pack("!BBQ", first, 127, size)
    return head + payload


class ServerFrameScrubber:
    """Feed raw bytes from the server; get raw bytes for the client with every needle replaced.

    A data message may be cut into many frames: the scrub runs across its
    frames and flushes at the frame that ends the message.
    """

    def __init__(self, replacements: Mapping[bytes, bytes]) -> None:
        self._replacements = dict(replacements)
        self._buffer = b""
        self._message: Scrubber | None = None
        self.closed = False
        """Whether the server's close frame has been passed on: after it, its end of the connection is
        the end of the closing handshake, not a cut."""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out: list[bytes] = []
        while True:
            parsed = self._next_frame()
            if parsed is None:
                return b"".join(out)
            first, payload = parsed
            out.append(self._rewrite(first, payload))

    def _next_frame(self) -> tuple[int, bytes] | None:
        buf = self._buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, offset = struct.unpack("!H", buf[2:4])[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, offset = struct.unpack("!Q", buf[2:10])[0], 10
        if second & 0x80:
            # A server must not mask (RFC 6455 §5.1). Passed on, its payload would reach the client
            # XOR-ed with a key the server chose: a secret the scrub cannot see, that anyone can unmask.
            raise ValueError("the server masked a frame, which a server must not")
        if size > _MAX_FRAME:
            raise ValueError("a WebSocket frame larger than 2 GiB")
        if first & 0x70:
            raise ValueError("the server set a frame's extension bits, though none was agreed: its payload is coded")
        if len(buf) < offset + size:
            return None
        self._buffer = buf[offset + size :]
        return first, buf[offset : offset + size]

    def _rewrite(self, first: int, payload: bytes) -> bytes:
        opcode, fin = first & 0x0F, bool(first & 0x80)
        if opcode == _CLOSE:
            self.closed = True
        if opcode >= 0x8:
            scrubbed = Scrubber(self._replacements).scrub(payload)
            return _frame(first, scrubbed if len(scrubbed) < 126 else payload[:0])
        if opcode in (_TEXT, _BINARY) or self._message is None:
            self._message = Scrubber(self._replacements)
        body = self._message.feed(payload)
        if fin:
            body += self._message.flush()
            self._message = None
        return _frame(first, body)


def upstream_cut(closed: bool, error: BaseException | None) -> str | None:
    """Why the server's end of the connection cut the WebSocket off, or None when it ended it
    properly: after its close frame (`closed`), a reset or an end of stream is the close (pure).

    Either way the firewall then closes the client's end too, after what it relayed: the client
    learns the connection is gone (its 1006, which RFC 6455 §7.4.1 forbids sending in a frame)
    instead of waiting on a server that is no longer there.
    """
    if closed:
        return None
    if error is None:
        return "the upstream ended the connection without a close frame"
    return f"the upstream connection failed without a close frame ({type(error).__name__})"
