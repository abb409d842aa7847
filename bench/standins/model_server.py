"""Scripted model server throughput, as a ratio to a bare aiohttp server, side by side.

Both servers run in this process on loopback and are driven by the same
httpx client, sequentially (one agent waits for each reply). The baseline
answers every POST with a fixed, pre-encoded SSE stream; the model server
parses the body, classifies it, chooses a turn, builds and frames the reply,
and appends the request (body included) to its JSONL log. Bodies are the
size Claude Code sends: ~80 KB (system prompt and tool schemas) and a small one.

Run: .venv/bin/python bench/standins/model_server.py [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from agent_smith.standins import ModelServer, parse_script
from agent_smith.standins.model_core import (
    Choice,
    Ids,
    RequestKind,
    build_reply,
    encode_sse,
    sse_events,
)


def _body(size: int) -> dict[str, Any]:
    tools = [
        {"name": f"tool_{n}", "description": "d" * 200, "input_schema": {"type": "object", "properties": {}}}
        for n in range(max(1, size // 400))
    ]
    return {
        "model": "claude-x",
        "max_tokens": 32000,
        "stream": True,
        "system": [{"type": "text", "text": "s" * (size // 2)}],
        "tools": tools,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}]}],
    }


async def _baseline() -> tuple[web.AppRunner, str]:
    reply = build_reply(RequestKind.AGENT_TURN, Choice(None, None), {"model": "m"}, Ids("msg_1"), "Standing by.")
    payload = b"".join(encode_sse(name, data) for name, data in sse_events(reply))

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(payload)
        await response.write_eof()
        return response

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, f"http://127.0.0.1:{sock.getsockname()[1]}"


async def _drive(client: httpx.AsyncClient, url: str, body: dict[str, Any], count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        start = time.perf_counter()
        async with client.stream("POST", f"{url}/v1/messages?beta=true", json=body) as response:
            await response.aread()
            assert response.status_code == 200
        latencies.append(time.perf_counter() - start)
    return latencies


async def main(count: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ModelServer(parse_script({"agents": {}}, "bench"), Path(tmp) / "log.jsonl")
        await server.start()
        runner, baseline_url = await _baseline()
        try:
            async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
                for label, size in (("80 KB body", 80_000), ("1 KB body", 1_000)):
                    body = _body(size)
                    await _drive(client, baseline_url, body, 20)
                    await _drive(client, server.agent_url("bench"), body, 20)
                    base = await _drive(client, baseline_url, body, count)
                    subject = await _drive(client, server.agent_url("bench"), body, count)
                    base_rate = count / sum(base)
                    subject_rate = count / sum(subject)
                    print(
                        f"{label}: model server {subject_rate:,.0f} req/s "
                        f"(p50 {statistics.median(subject) * 1000:.2f} ms), "
                        f"baseline {base_rate:,.0f} req/s (p50 {statistics.median(base) * 1000:.2f} ms), "
                        f"ratio {subject_rate / base_rate:.2f}"
                    )
        finally:
            await runner.cleanup()
            await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    asyncio.run(main(parser.parse_args().requests))
