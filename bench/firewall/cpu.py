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
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import BULK, Route, bulk, start_firewall, start_upstream, stop

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
        try:
            upstream, direct = start_upstream(root, processes)
            fw, through = start_firewall(root, processes, direct.upstream_port)
            # A warm-up download each way: the first pays for imports, certificates and page faults.
            _download(direct, {"upstream": upstream.pid})
            _download(through, {"upstream": upstream.pid, "firewall": fw.pid})
            runs: dict[str, list[dict[str, float]]] = {"direct": [], "firewall": []}
            for _ in range(count):
                runs["direct"].append(_download(direct, {"upstream": upstream.pid}))
                runs["firewall"].append(_download(through, {"upstream": upstream.pid, "firewall": fw.pid}))
        finally:
            stop(processes)
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
