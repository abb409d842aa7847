"""CPU seconds per GB of a bulk download, per process: client, upstream, firewall.

Wall-clock throughput on a shared 2-core machine moves with whatever else runs;
the CPU each process spends per byte does not. Bulk through the firewall is
CPU-bound on two cores shared by three processes, so these figures predict the
bench's bulk ratio: with per-GB costs c, u (direct) and c', f, u' (through the
firewall), an ideal scheduler moves 1 / max(c, u) GB/s direct and
1 / max(c', f, u', (c' + f + u') / 2) through the firewall.

    .venv/bin/python bench/firewall/cpu.py [downloads-per-column]
"""

from __future__ import annotations

import asyncio
import base64
import os
import resource
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import BULK, HERE, Route, _crew, _free_port, _wait_port, bulk

from agent_smith.certs import mint_ca
from agent_smith.fsutil import write_atomic

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _download(route: Route, pids: dict[str, int]) -> dict[str, float]:
    """One bulk download: CPU seconds per GB of each process, and the wall-clock MB/s."""
    before = {name: _cpu_of(pid) for name, pid in pids.items()}
    client = _own_cpu()
    speed = asyncio.run(bulk(route))
    out = {name: (_cpu_of(pid) - before[name]) / (BULK / 1e9) for name, pid in pids.items()}
    out["client"] = (_own_cpu() - client) / (BULK / 1e9)
    out["MB/s"] = speed
    return out


def _predicted(direct: dict[str, float], firewall: dict[str, float]) -> float:
    direct_rate = 1 / max(direct["client"], direct["upstream"])
    costs = [firewall["client"], firewall["firewall"], firewall["upstream"]]
    firewall_rate = 1 / max(*costs, sum(costs) / 2)
    return firewall_rate / direct_rate


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="agent-smith-cpu-") as tmp:
        root = Path(tmp)
        upstream_ca = mint_ca("bench upstream CA")
        cert, key = upstream_ca.issue(["localhost", "127.0.0.1"])
        write_atomic(root / "upstream.pem", cert + key, mode=0o600)
        write_atomic(root / "upstream-ca.pem", upstream_ca.cert_pem)
        try:
            upstream = subprocess.Popen(
                [sys.executable, str(HERE / "upstream.py"), str(root / "upstream.pem"), str(root / "port")]
            )
            processes.append(upstream)
            while not (root / "port").exists() or not (root / "port").read_text():
                time.sleep(0.02)
            upstream_port = int((root / "port").read_text())
            fw_port = _free_port()
            crew = _crew(root, fw_port, upstream_port, root / "upstream-ca.pem")
            cli = Path(sys.executable).parent / "agent-smith"
            fw = subprocess.Popen([str(cli), "firewall", "--crew", str(crew)], stdout=subprocess.DEVNULL)
            processes.append(fw)
            _wait_port(fw_port, fw, "the firewall")

            from agent_smith.crew import load_crew
            from agent_smith.egress import ca_cert_for, proxy_url_for

            loaded = load_crew(crew).crew
            url = proxy_url_for(loaded, "devbot")
            auth = base64.b64encode(url.split("//", 1)[1].rsplit("@", 1)[0].encode()).decode()

            def context(ca: bytes) -> ssl.SSLContext:
                ctx = ssl.create_default_context(cadata=ca.decode())
                ctx.set_alpn_protocols(["http/1.1"])
                return ctx

            direct = Route(None, None, upstream_port, context(upstream_ca.cert_pem))
            through = Route(fw_port, auth, upstream_port, context(ca_cert_for(loaded).read_bytes()))
            # A warm-up download each way: the first pays for imports, certificates and page faults.
            _download(direct, {"upstream": upstream.pid})
            _download(through, {"upstream": upstream.pid, "firewall": fw.pid})
            runs: dict[str, list[dict[str, float]]] = {"direct": [], "firewall": []}
            for _ in range(count):
                runs["direct"].append(_download(direct, {"upstream": upstream.pid}))
                runs["firewall"].append(_download(through, {"upstream": upstream.pid, "firewall": fw.pid}))
        finally:
            for process in reversed(processes):
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
    medians = {column: {key: statistics.median(r[key] for r in rs) for key in rs[0]} for column, rs in runs.items()}
    print(f"CPU seconds per GB, median of {count} downloads of {BULK / 1e6:.0f} MB each way")
    print(f"{'':10}{'client':>8}{'upstream':>10}{'firewall':>10}{'MB/s':>8}")
    for column, m in medians.items():
        fw_cost = f"{m['firewall']:.2f}" if "firewall" in m else "-"
        print(f"{column:10}{m['client']:>8.2f}{m['upstream']:>10.2f}{fw_cost:>10}{m['MB/s']:>8.0f}")
    print(f"predicted bulk ratio on 2 idle cores: {_predicted(medians['direct'], medians['firewall']):.0%}")
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
