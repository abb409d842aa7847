"""`agent-smith up` of two installs side by side, paired: is a change to `up` faster?

Run to run, `bench_up.py`'s ratio moves more on a shared 2-core machine
than one change to `up` does. This bench alternates two agent-smith
executables (say, a worktree of main with its own `.venv`, and this
checkout) on fresh crews of N agents against one model stand-in: each round
runs `up` (a first `up`) and `up` again after `down` with both, in
alternating order, and reports per kind of `up` the median of the paired
differences, how often the candidate was faster, both medians, and the
median time from the supervisor starting claude to the agent ready
(claude's boot under `up`, from the supervisor's log).

Run: .venv/bin/python bench/runtime/ab_up.py --baseline /tmp/main/.venv/bin/agent-smith [--candidate CLI]
     [--agents 1] [--rounds 20] [--chat]

With `--chat` every agent has the Matrix channel, on a real Synapse (as
`bench_up.py --chat`).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_up import CLI, env_for, positive, write_crew

from agent_smith.errors import AgentSmithError
from agent_smith.standins import ModelServerThread, parse_script
from agent_smith.standins.synapse import SynapseServer

KINDS = ("first", "again")


def _boot(log: Path) -> float | None:
    """From "started N agent(s)" to the last agent_started in the supervisor's log."""
    started = ready = None
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        at = dt.datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).timestamp()
        message = str(entry.get("message", ""))
        if message.startswith("started "):
            started = at
        elif "agent_started" in message:
            ready = at
    return ready - started if started is not None and ready is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="the agent-smith executable to compare with")
    parser.add_argument("--candidate", type=Path, default=CLI, help="default: this checkout's")
    parser.add_argument("--agents", type=positive, default=1)
    parser.add_argument("--rounds", type=positive, default=20)
    parser.add_argument("--chat", action="store_true", help="every agent with the Matrix channel, on a real Synapse")
    args = parser.parse_args()
    for cli in (args.baseline, args.candidate):
        if not cli.is_file():
            parser.error(f"{cli} is not an agent-smith executable")
    clis = {"baseline": args.baseline, "candidate": args.candidate}
    times: dict[tuple[str, str], list[float]] = {(c, k): [] for c in clis for k in KINDS}
    boots: dict[tuple[str, str], list[float]] = {(c, k): [] for c in clis for k in KINDS}
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-smith-bench-ab-up-")))
        synapse = stack.enter_context(SynapseServer(tmp / "synapse")) if args.chat else None
        server = ModelServerThread(parse_script({"agents": {}}, "bench"), tmp / "model.jsonl")
        server.start()
        stack.callback(server.stop)
        for round_ in range(args.rounds):
            for which in sorted(clis, reverse=round_ % 2 == 1):
                root = tmp / f"crew-{which}-{round_}"
                write_crew(root, args.agents, server.url, synapse)
                env = env_for(tmp)
                log = tmp / f"crew-{which}-{round_}-state" / "bench" / "runtime" / "supervisor.log"
                for kind in KINDS:
                    began = time.perf_counter()
                    up = subprocess.run(
                        [str(clis[which]), "up", "--crew", str(root), "--no-proxy", "127.0.0.1"],
                        env=env, capture_output=True, text=True, timeout=300, check=False,
                    )  # fmt: skip
                    took = time.perf_counter() - began
                    subprocess.run(
                        [str(clis[which]), "down", "--crew", str(root)], env=env, capture_output=True, timeout=120
                    )
                    if up.returncode != 0:
                        sys.exit(f"{which} `up` failed: {up.stderr.strip()}")
                    times[which, kind].append(took)
                    if (boot := _boot(log)) is not None:
                        boots[which, kind].append(boot)
                    log.unlink()
    for kind in KINDS:
        pairs = [c - b for c, b in zip(times["candidate", kind], times["baseline", kind], strict=True)]
        print(
            f"{args.agents} agent(s), {'first up' if kind == 'first' else 'up again'}: candidate - baseline "
            f"{statistics.median(pairs) * 1000:+.0f} ms (median of {len(pairs)} pairs; candidate faster in "
            f"{sum(p < 0 for p in pairs)}); medians {statistics.median(times['baseline', kind]):.3f} s -> "
            f"{statistics.median(times['candidate', kind]):.3f} s; claude's boot under up "
            f"{statistics.median(boots['baseline', kind]):.3f} s -> {statistics.median(boots['candidate', kind]):.3f} s"
        )


if __name__ == "__main__":
    try:
        main()
    except AgentSmithError as exc:
        sys.exit(f"ab_up: {exc}")
