"""One TCP connection, plain or TLS on an `ssl.SSLSocket`, driven by the event loop's readiness callbacks.

asyncio's own TLS layer (sslproto) runs TLS over memory BIOs: every byte
received is copied into the incoming BIO and decrypted record by record
through a Python wrapper, every byte sent is encrypted into a growing outgoing
BIO and copied out of it again, and each step is a callback of its own. Here
OpenSSL reads and writes the socket itself, and a read decrypts every record
that has arrived into one reused buffer. The firewall decrypts and re-encrypts
every byte it relays, so its CPU per byte decides bulk throughput on a machine
whose cores the client and the upstream share.

The stream reads only when asked (backpressure is the socket's own window), and
serves one reader and one writer at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import deque

__all__ = ["SocketStream"]

_READ = 256 * 1024
# drain() waits while more than this is queued behind a socket that would block.
_HIGH_WATER = 256 * 1024
# Parts written together up to this size are joined into one write (one TLS record).
_JOIN_UP_TO = 16 * 1024
# How long a closed stream may take to send what was queued before it, to a peer that does not read.
_CLOSE_GRACE = 30.0
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def _wake(future: asyncio.Future[None] | None) -> None:
    # Waiters look at the stream's state once woken: a future holding an exception nobody
    # awaits any more would only be logged.
    if future is not None and not future.done():
        future.set_result(None)


class SocketStream:
    """Both directions of one connection: ``read``, ``write``, ``drain``, ``start_tls``, ``close``."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = asyncio.get_running_loop()
        self._view = memoryview(bytearray(_READ))
        # Bytes a liveness check read ahead of the reader.
        self._stash = b""
        self._out: deque[bytes] = deque()
        self._out_size = 0
        self._writer_registered = False
        self._readable: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._eof = False
        self._closing = False
        self._closed = False
        self._error: BaseException | None = None
        self._grace: asyncio.TimerHandle | None = None

    @classmethod
    async def connect(cls, address: str, port: int) -> SocketStream:
        """A TCP connection to `address` (an IP literal)."""
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        raw = socket.socket(family, socket.SOCK_STREAM)
        try:
            raw.setblocking(False)
            await asyncio.get_running_loop().sock_connect(raw, (address, port))
        except BaseException:
            raw.close()
            raise
        return cls(raw)

    async def start_tls(self, ctx: ssl.SSLContext, *, server_side: bool, server_hostname: str | None = None) -> None:
        """Upgrade to TLS (the handshake included) once the plain part written is sent."""
        if self._stash:
            raise ConnectionError("the peer sent more than the plain part before the TLS handshake")
        while self._out:
            await self._wait_writable()
        self._sock = ctx.wrap_socket(
            self._sock, server_side=server_side, server_hostname=server_hostname, do_handshake_on_connect=False
        )
        tls = self._sock
        assert isinstance(tls, ssl.SSLSocket)
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                await self._wait_readable()
            except ssl.SSLWantWriteError:
                await self._wait_writable()

    @property
    def ssl_object(self) -> ssl.SSLSocket | None:
        return self._sock if isinstance(self._sock, ssl.SSLSocket) else None

    # ---- reading ------------------------------------------------------------------------

    async def read(self, n: int = -1, /) -> bytes:
        """Up to `n` bytes (one buffer's worth at most) of what has arrived, b"" at the end of the stream."""
        limit = _READ if n < 0 else min(n, _READ)
        if self._stash:
            data, self._stash = self._stash[:limit], self._stash[limit:]
            return data
        while True:
            got = self._read_available(limit)
            if got:
                return bytes(self._view[:got])
            if self._eof:
                return b""
            await self._wait_readable()

    def _read_available(self, limit: int) -> int:
        """Take what can be had without waiting: over TLS, every record that has arrived, up to `limit` bytes."""
        got = 0
        while got < limit and not self._eof:
            try:
                count = self._sock.recv_into(self._view[got:limit])
            except _WOULD_BLOCK:
                break
            except OSError:
                if got:
                    # The data first; the next read meets the failure again.
                    break
                raise
            if count == 0:
                self._eof = True
            got += count
            if not isinstance(self._sock, ssl.SSLSocket):
                # A plain socket hands over all it has in one call.
                break
        return got

    def at_eof(self) -> bool:
        """Whether the peer has ended the stream; reads what already arrived to know (a TLS close alert)."""
        if not self._stash and not self._eof and not self._closed:
            try:
                got = self._read_available(_READ)
            except OSError:
                self._eof = True
                return True
            self._stash = bytes(self._view[:got])
        return (self._eof or self._closed) and not self._stash

    async def _wait_readable(self) -> None:
        self._check_open()
        future = self._readable = self._loop.create_future()
        self._loop.add_reader(self._fd, _wake, future)
        try:
            await future
        finally:
            self._readable = None
            if not self._closed:
                self._loop.remove_reader(self._fd)
        self._check_open()

    def _check_open(self) -> None:
        if self._closed:
            raise self._error or ConnectionResetError("the connection is closed")

    # ---- writing ------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview, /) -> None:
        if self._closing or not data:
            return
        sent = 0
        if not self._out:
            sent = self._send(data)
            if sent == len(data) or self._closed:
                return
        # Over TLS `sent` is 0 here: OpenSSL keeps what it encrypted and wants the very same
        # bytes again once the socket is writable.
        rest = bytes(memoryview(data)[sent:])
        self._out.append(rest)
        self._out_size += len(rest)
        self._want_writable()

    def writelines(self, parts: list[bytes] | tuple[bytes, ...], /) -> None:
        if sum(map(len, parts)) <= _JOIN_UP_TO:
            # One TLS record and one segment: a small event (SSE) must not reach the peer in three pieces.
            self.write(b"".join(parts))
        else:
            for part in parts:
                self.write(part)

    def _send(self, data: bytes | bytearray | memoryview) -> int:
        """What the socket took of `data` without waiting (over TLS: all of it or nothing)."""
        try:
            return self._sock.send(data)
        except _WOULD_BLOCK:
            return 0
        except OSError as exc:
            self._fail(exc)
            return 0

    async def drain(self) -> None:
        self._check_open()
        if self._out_size > _HIGH_WATER:
            if self._drained is None:
                self._drained = self._loop.create_future()
            # Shielded: a cancelled drain must not cancel the future the next drain waits on.
            await asyncio.shield(self._drained)
            self._check_open()

    async def _wait_writable(self) -> None:
        self._check_open()
        future = self._writable = self._loop.create_future()
        self._want_writable()
        await future
        self._check_open()

    def _want_writable(self) -> None:
        if not self._writer_registered and not self._closed:
            self._writer_registered = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        writable, self._writable = self._writable, None
        _wake(writable)
        while self._out:
            head = self._out[0]
            sent = self._send(head)
            if self._closed:
                return
            self._out_size -= sent
            if sent < len(head):
                if sent:
                    self._out[0] = head[sent:]
                break
            self._out.popleft()
        if self._out_size <= _HIGH_WATER:
            drained, self._drained = self._drained, None
            _wake(drained)
        if not self._out and self._writable is None:
            self._writer_registered = False
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish()

    # ---- the end ------------------------------------------------------------------------

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Close once what was written is sent (within a grace period)."""
        if self._closing:
            return
        self._closing = True
        if self._out:
            self._grace = self._loop.call_later(_CLOSE_GRACE, self.abort)
        else:
            self._finish()

    def _finish(self) -> None:
        """Everything written is sent: over TLS say so (a close alert), so the peer can tell an end from a cut."""
        if isinstance(self._sock, ssl.SSLSocket) and not self._closed:
            # Sends the alert without waiting for the peer's: the socket is non-blocking.
            with contextlib.suppress(OSError, ValueError):
                self._sock.unwrap()
        self.abort()

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        if self._grace is not None:
            self._grace.cancel()
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        self._writer_registered = False
        _wake(self._readable)
        _wake(self._writable)
        drained, self._drained = self._drained, None
        _wake(drained)
        with contextlib.suppress(OSError):
            self._sock.close()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._out.clear()
        self._out_size = 0
        self.abort()
