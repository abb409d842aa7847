"""The firewall's socket streams against a real TLS peer on loopback: read boundaries, backpressure, close."""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent_smith.certs import mint_ca
from agent_smith.egress.sockstream import SocketStream
from agent_smith.fsutil import write_atomic

Peer = Callable[[ssl.SSLSocket], None]


@pytest.fixture
def tls_peer(tmp_path: Path) -> Iterator[Callable[[Peer], tuple[int, ssl.SSLContext]]]:
    """A one-connection TLS server on loopback running `peer` in a thread; gives its port and a client context."""
    ca = mint_ca("sockstream test CA")
    cert, key = ca.issue(["localhost"])
    write_atomic(tmp_path / "leaf.pem", cert + key, mode=0o600)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "leaf.pem")
    client_ctx = ssl.create_default_context(cadata=ca.cert_pem.decode())
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def start(peer: Peer) -> tuple[int, ssl.SSLContext]:
        listener = socket.create_server(("127.0.0.1", 0))

        def run() -> None:
            try:
                raw, _ = listener.accept()
                with server_ctx.wrap_socket(raw, server_side=True) as tls:
                    peer(tls)
            except BaseException as exc:
                failures.append(exc)
            finally:
                listener.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1], client_ctx

    yield start
    for thread in threads:
        thread.join(timeout=30)
    assert not failures, failures


async def _connect(port: int, ctx: ssl.SSLContext) -> SocketStream:
    stream = await SocketStream.connect("127.0.0.1", port)
    await stream.start_tls(ctx, server_side=False, server_hostname="localhost")
    return stream


def test_a_read_returns_what_has_arrived_and_the_end_is_seen_on_an_idle_stream(
    tls_peer: Callable[[Peer], tuple[int, ssl.SSLContext]],
) -> None:
    def peer(tls: ssl.SSLSocket) -> None:
        tls.sendall(b"a" * 40_000)  # three TLS records
        time.sleep(0.3)
        tls.sendall(b"b" * 1000)
        time.sleep(0.3)
        tls.unwrap()

    port, ctx = tls_peer(peer)

    async def main() -> None:
        stream = await _connect(port, ctx)
        first = b""
        while len(first) < 40_000:
            first += await stream.read()
        # Nothing waits for a fuller buffer: the pause ends the read (an SSE event is never held).
        assert first == b"a" * 40_000
        assert await stream.read() == b"b" * 1000
        assert not stream.at_eof()
        await asyncio.sleep(0.6)
        # The close alert of a peer nobody is reading from is noticed (a pooled upstream that left).
        assert stream.at_eof()
        assert await stream.read() == b""
        stream.close()

    asyncio.run(main())


def test_a_large_write_to_a_slow_reader_arrives_whole_through_backpressure_and_close(
    tls_peer: Callable[[Peer], tuple[int, ssl.SSLContext]],
) -> None:
    pieces, piece = 48, 256 * 1024
    received = hashlib.sha256()
    expected = hashlib.sha256()
    ended = threading.Event()

    def peer(tls: ssl.SSLSocket) -> None:
        size = 0
        while data := tls.recv(65536):
            received.update(data)
            size += len(data)
            if size < 4 * 1024 * 1024:
                # Slow at first: the writer must meet a full socket and wait.
                time.sleep(0.002)
        ended.set()

    port, ctx = tls_peer(peer)

    async def main() -> None:
        stream = await _connect(port, ctx)
        # One buffer, rewritten after each write: what the stream queues must be its own copy.
        buffer = bytearray(piece)
        for number in range(pieces):
            buffer[:] = bytes([number % 251]) * piece
            expected.update(buffer)
            stream.write(memoryview(buffer))
            if number < pieces - 4:
                await stream.drain()
        # The last pieces were not drained: closing still sends them first, then the close alert.
        stream.close()
        assert await asyncio.to_thread(ended.wait, 30)

    asyncio.run(main())
    assert received.hexdigest() == expected.hexdigest()
