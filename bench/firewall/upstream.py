"""The bench's HTTPS upstream: a minimal keep-alive HTTP/1.1 server, fast enough not to be the bottleneck.

    python upstream.py CERT_AND_KEY_PEM PORT_FILE

GET /small → 13 bytes; GET /sse?n=N&ms=M → N events M ms apart, each carrying
its send time; GET /bytes/N → N bytes. Prints nothing; writes its port to PORT_FILE.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
import time
from pathlib import Path

SMALL = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nhello, bench\n"
CHUNK = b"x" * (256 * 1024)


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            target = head.split(b" ", 2)[1].decode()
            if target == "/small":
                writer.write(SMALL)
            elif target.startswith("/sse"):
                query = dict(p.split("=") for p in target.partition("?")[2].split("&") if "=" in p)
                count, gap = int(query.get("n", "10")), int(query.get("ms", "50")) / 1000
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                )
                for i in range(count):
                    event = f"event: tick\ndata: {i} {time.time():.6f}\n\n".encode()
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                    await writer.drain()
                    await asyncio.sleep(gap)
                writer.write(b"0\r\n\r\n")
            elif target.startswith("/bytes/"):
                size = int(target.rsplit("/", 1)[1])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
                while size > 0:
                    writer.write(CHUNK[: min(size, len(CHUNK))])
                    size -= len(CHUNK)
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main(pem: str, port_file: str) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pem)
    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx, backlog=1024)
    # A file announces the port: the parent polls for it before it measures anything.
    Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))  # noqa: ASYNC240
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
