"""The egress firewall against bare mitmproxy and against no proxy at all, side by side in one run.

Three columns, same upstream, same load generator (an asyncio client in this
process), same machine, run one after the other:

    direct       the client talks TLS straight to the upstream
    mitmproxy    bare mitmproxy 11.0.2 DumpMaster (no addons), in its own venv
    firewall     `agent-smith firewall` with full policy: allowlist, proxy
                 credentials, a placeholder swap on every request, the
                 response scrub, the audit log and metrics

Figures: small keep-alive GETs at concurrency 1 and 10 (req/s, p50, p99); new
intercepted connections per second; SSE time to first event and delay per
event; bulk download throughput. Targets (issue 7): firewall req/s ≥ 1.5×
mitmproxy; ≤ 1 ms added p50 at c=1; ≤ 1 ms added per SSE event; bulk ≥ 50%
of direct.

mitmproxy is kept out of the project's environment (it pins h11 ≤ 0.14,
CVE-2025-43859): the first run creates bench/.venv-mitmproxy with
`mitmproxy==11.0.2` from PyPI and reuses it afterwards.

    .venv/bin/python bench/firewall/bench.py [seconds-per-measure]
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent_smith.certs import mint_ca
from agent_smith.fsutil import write_atomic
from agent_smith.listeners import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MITM_VENV = REPO / "bench" / ".venv-mitmproxy"
PLACEHOLDER = "agent-smith-placeholder-bench-token"
BULK = 200 * 1000 * 1000
ROUNDS = 3
# Bulk throughput swings with what else the two cores are doing, and a direct download is the
# most CPU-bound of the columns: the ratio is taken over back-to-back pairs, not across rounds.
BULK_PAIRS = 7


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on {port}")


def ensure_mitmproxy() -> Path:
    python = MITM_VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import mitmproxy"], check=False).returncode == 0:
        return python
    print("creating bench/.venv-mitmproxy with mitmproxy==11.0.2 (once)…", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(MITM_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "mitmproxy==11.0.2"], check=True)
    (MITM_VENV / ".gitignore").write_text("*\n")
    return python


# ---- the load generator -------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    proxy_port: int | None
    proxy_auth: str | None
    upstream_port: int
    ctx: ssl.SSLContext


async def _open(route: Route) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    if route.proxy_port is None:
        return await asyncio.open_connection(
            "127.0.0.1", route.upstream_port, ssl=route.ctx, server_hostname="localhost", limit=1 << 20
        )
    reader, writer = await asyncio.open_connection("127.0.0.1", route.proxy_port, limit=1 << 20)
    auth = f"Proxy-Authorization: Basic {route.proxy_auth}\r\n" if route.proxy_auth else ""
    writer.write(
        f"CONNECT localhost:{route.upstream_port} HTTP/1.1\r\nHost: localhost:{route.upstream_port}\r\n{auth}\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"CONNECT refused: {head[:80]!r}")
    await writer.start_tls(route.ctx, server_hostname="localhost")
    return reader, writer


def _request(route: Route, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: localhost:{route.upstream_port}\r\n"
        f"Authorization: Bearer {PLACEHOLDER}\r\nAccept: */*\r\n\r\n"
    ).encode()


async def _body(reader: asyncio.StreamReader, on_data: Callable[[bytes], None] | None = None) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    headers = {
        line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")[1:]
        if b":" in line
    }
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"request failed: {head[:120]!r}")
    size = 0
    if b"content-length" in headers:
        left = int(headers[b"content-length"])
        while left:
            data = await reader.read(min(left, 1 << 20))
            if not data:
                raise SystemExit("the body was cut short")
            left -= len(data)
            size += len(data)
        return size
    while True:
        line = await reader.readuntil(b"\r\n")
        length = int(line.strip().split(b";")[0], 16)
        if length == 0:
            await reader.readuntil(b"\r\n")
            return size
        data = await reader.readexactly(length + 2)
        size += length
        if on_data is not None:
            on_data(data[:-2])


async def keepalive(route: Route, concurrency: int, seconds: float) -> tuple[float, float, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        reader, writer = await _open(route)
        request = _request(route, "/small")
        while time.perf_counter() < stop:
            start = time.perf_counter()
            writer.write(request)
            await _body(reader)
            latencies.append(time.perf_counter() - start)
        writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    latencies.sort()
    return len(latencies) / elapsed, latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000


async def new_connections(route: Route, concurrency: int, seconds: float) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop:
            reader, writer = await _open(route)
            writer.write(_request(route, "/small"))
            await _body(reader)
            writer.close()
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - began)


async def sse(route: Route, events: int = 20, gap_ms: int = 50) -> tuple[float, float]:
    reader, writer = await _open(route)
    delays: list[float] = []
    first: list[float] = []
    start = time.perf_counter()

    def on_data(data: bytes) -> None:
        now = time.time()
        if not first:
            first.append(time.perf_counter() - start)
        for line in data.decode().splitlines():
            if line.startswith("data: "):
                delays.append(now - float(line.split()[2]))

    writer.write(_request(route, f"/sse?n={events}&ms={gap_ms}"))
    await _body(reader, on_data)
    writer.close()
    return first[0] * 1000, statistics.mean(delays) * 1000


async def bulk(route: Route) -> float:
    reader, writer = await _open(route)
    start = time.perf_counter()
    writer.write(_request(route, f"/bytes/{BULK}"))
    size = await _body(reader)
    writer.close()
    assert size == BULK
    return size / (time.perf_counter() - start) / 1e6


async def measure(route: Route, seconds: float) -> dict[str, float]:
    out: dict[str, float] = {}
    out["c1_rps"], out["c1_p50"], out["c1_p99"] = await keepalive(route, 1, seconds)
    out["c10_rps"], out["c10_p50"], out["c10_p99"] = await keepalive(route, 10, seconds)
    out["newconn"] = await new_connections(route, 4, seconds)
    sse_runs = [await sse(route) for _ in range(3)]
    out["sse_first"] = statistics.median(r[0] for r in sse_runs)
    out["sse_event"] = statistics.median(r[1] for r in sse_runs)
    out["bulk"] = await bulk(route)
    return out


# ---- the three columns --------------------------------------------------------------------


def _crew(root: Path, port: int, upstream_port: int, upstream_ca: Path) -> Path:
    crew = root / "crew"
    (crew / "agents" / "devbot").mkdir(parents=True)
    (crew / "agents" / "devbot" / "CLAUDE.md").write_text("bench\n")
    (crew / "agents" / "_shared").mkdir(parents=True)
    (root / "token").write_text("REAL-bench-secret-value-0123456789\n")
    (crew / "crew.yaml").write_text(
        f"""version: 1
crew: {{name: bench}}
agents: [{{name: devbot}}]
runtime: {{state_dir: {root / "state"}}}
egress:
  listen: 127.0.0.1:{port}
  metrics_listen: 127.0.0.1:{free_port()}
  upstream_ca: {upstream_ca}
  allow:
    - {{host: localhost, ports: [{upstream_port}], allow_private: true}}
    - {{host: "*.example.org"}}
  secrets:
    - name: bench
      placeholder: {PLACEHOLDER}
      source: {{file: {root / "token"}}}
      hosts: [localhost]
"""
    )
    return crew


def tls_context(*cas: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata="".join(c.decode() for c in cas))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def start_upstream(root: Path, processes: list[subprocess.Popen[bytes]]) -> tuple[subprocess.Popen[bytes], Route]:
    """The HTTPS upstream (its own test CA, added to `processes`), and the direct route to it."""
    upstream_ca = mint_ca("bench upstream CA")
    cert, key = upstream_ca.issue(["localhost", "127.0.0.1"])
    write_atomic(root / "upstream.pem", cert + key, mode=0o600)
    write_atomic(root / "upstream-ca.pem", upstream_ca.cert_pem)
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "upstream.py"), str(root / "upstream.pem"), str(root / "port")]
    )
    processes.append(upstream)
    while not (root / "port").exists() or not (root / "port").read_text():
        time.sleep(0.02)
    return upstream, Route(None, None, int((root / "port").read_text()), tls_context(upstream_ca.cert_pem))


def start_firewall(
    root: Path, processes: list[subprocess.Popen[bytes]], upstream_port: int
) -> tuple[subprocess.Popen[bytes], Route]:
    """`agent-smith firewall` with full policy in front of the upstream, and devbot's route through it."""
    from agent_smith.crew import load_crew
    from agent_smith.egress import ca_cert_for, proxy_url_for

    fw_port = free_port()
    crew = _crew(root, fw_port, upstream_port, root / "upstream-ca.pem")
    cli = Path(sys.executable).parent / "agent-smith"
    firewall = subprocess.Popen([str(cli), "firewall", "--crew", str(crew)], stdout=subprocess.DEVNULL)
    processes.append(firewall)
    _wait_port(fw_port, firewall, "the firewall")
    loaded = load_crew(crew).crew
    url = proxy_url_for(loaded, "devbot")
    auth = base64.b64encode(url.split("//", 1)[1].rsplit("@", 1)[0].encode()).decode()
    return firewall, Route(fw_port, auth, upstream_port, tls_context(ca_cert_for(loaded).read_bytes()))


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in reversed(processes):
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    mitm_python = ensure_mitmproxy()
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="agent-smith-bench-") as tmp:
        root = Path(tmp)
        intercept_ca = mint_ca("bench mitmproxy CA")
        (root / "mitm").mkdir()
        write_atomic(root / "mitm" / "mitmproxy-ca.pem", intercept_ca.key_pem + intercept_ca.cert_pem, mode=0o600)
        try:
            _, direct = start_upstream(root, processes)
            mitm_port = free_port()
            mitm = subprocess.Popen(
                [
                    str(mitm_python),
                    str(HERE / "mitm_baseline.py"),
                    str(root / "mitm"),
                    str(mitm_port),
                    str(root / "upstream-ca.pem"),
                ],
                stdout=subprocess.DEVNULL,
            )
            processes.append(mitm)
            _wait_port(mitm_port, mitm, "mitmproxy")
            _, through = start_firewall(root, processes, direct.upstream_port)
            routes = {
                "direct": direct,
                "mitmproxy": Route(mitm_port, None, direct.upstream_port, tls_context(intercept_ca.cert_pem)),
                "firewall": through,
            }
            # Rounds, each column once per round in a rotating order: a machine whose load drifts
            # during the run then biases no column, and the median of the rounds is reported.
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in routes}
            order = list(routes)
            for number in range(ROUNDS):
                for name in order[number % 3 :] + order[: number % 3]:
                    print(f"round {number + 1}/{ROUNDS}: {name}…", file=sys.stderr)
                    rounds[name].append(asyncio.run(measure(routes[name], seconds)))
            results = {
                name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()
            }
            print("bulk pairs: direct, firewall…", file=sys.stderr)
            bulk_ratios = []
            for number in range(BULK_PAIRS):
                pair = ("direct", "firewall") if number % 2 == 0 else ("firewall", "direct")
                speed = {name: asyncio.run(bulk(routes[name])) for name in pair}
                bulk_ratios.append(speed["firewall"] / speed["direct"])
        finally:
            stop(processes)
        report(results, bulk_ratios)


def report(results: dict[str, dict[str, float]], bulk_ratios: list[float]) -> None:
    d, m, f = results["direct"], results["mitmproxy"], results["firewall"]
    rows = [
        ("keep-alive GET c=1 req/s", "c1_rps", "{:,.0f}"),
        ("  p50 ms", "c1_p50", "{:.2f}"),
        ("  p99 ms", "c1_p99", "{:.2f}"),
        ("keep-alive GET c=10 req/s", "c10_rps", "{:,.0f}"),
        ("  p50 ms", "c10_p50", "{:.2f}"),
        ("  p99 ms", "c10_p99", "{:.2f}"),
        ("new connections/s (c=4)", "newconn", "{:,.0f}"),
        ("SSE first event ms", "sse_first", "{:.2f}"),
        ("SSE delay per event ms", "sse_event", "{:.3f}"),
        ("bulk download MB/s", "bulk", "{:,.0f}"),
    ]
    print(f"{'':28}{'direct':>10}{'mitmproxy':>11}{'firewall':>10}{'fw/mitm':>9}{'fw/direct':>10}")
    for label, key, fmt in rows:
        print(
            f"{label:28}{fmt.format(d[key]):>10}{fmt.format(m[key]):>11}{fmt.format(f[key]):>10}"
            f"{f[key] / m[key]:>8.2f}x{f[key] / d[key]:>9.2f}x"
        )
    print()
    print(f"added p50 at c=1 vs direct: {f['c1_p50'] - d['c1_p50']:.2f} ms (target ≤ 1 ms)")
    print(f"added delay per SSE event vs direct: {f['sse_event'] - d['sse_event']:.3f} ms (target ≤ 1 ms)")
    print(
        f"req/s vs mitmproxy: c=1 {f['c1_rps'] / m['c1_rps']:.2f}x, c=10 {f['c10_rps'] / m['c10_rps']:.2f}x (target ≥ 1.5x)"
    )
    print(
        f"bulk vs direct: {statistics.median(bulk_ratios):.0%} (target ≥ 50%; median of {len(bulk_ratios)} "
        f"back-to-back pairs, {min(bulk_ratios):.0%}–{max(bulk_ratios):.0%})"
    )
    print(f"median of {ROUNDS} rounds; load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
