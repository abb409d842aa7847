"""Wall time of the hook commands, interpreter start-up included, against `python -c pass`.

Run: .venv/bin/python bench/hooks/bench_hooks.py [--rounds N]

Each round runs every command once, interleaved, so machine noise hits all
columns alike; medians and p90 are printed with the ratio to `python -c pass`.
Targets (issue 9): `hook prompt` and `hook tool` ≤ 4×; `hook stop` ≤ 4× plus
one round trip to the GitHub stand-in (measured in the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_smith.crew import scaffold_crew

PY = sys.executable
AGENT_SMITH = str(Path(PY).parent / "agent-smith")
NO_PR = {"tool_name": "Bash", "tool_input": {"command": "ls -la"}, "tool_response": {"stdout": "total 0\n"}}


def timed(argv: list[str], env: dict[str, str], stdin: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        crew = Path(tmp) / "crew"
        scaffold_crew(crew)
        text = (
            (crew / "crew.yaml").read_text().replace("egress:\n", f"runtime:\n  state_dir: {tmp}/state\n\negress:\n", 1)
        )
        (crew / "crew.yaml").write_text(text)
        home = Path(tmp) / "home"
        home.mkdir()
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "AGENT_NAME": "devbot", "AGENT_SMITH_CREW": str(crew)}
        commands = {
            "python -c pass": ([PY, "-c", "pass"], ""),
            "hook prompt": ([AGENT_SMITH, "hook", "prompt"], json.dumps({"prompt": "hi", "session_id": "s"})),
            "hook tool (no PR)": ([AGENT_SMITH, "hook", "tool"], json.dumps(NO_PR)),
        }
        for argv, stdin in commands.values():
            timed(argv, env, stdin)  # warm the page cache and the hook snapshot
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(rounds):
            for name, (argv, stdin) in commands.items():
                samples[name].append(timed(argv, env, stdin))
    base = statistics.median(samples["python -c pass"])
    print(f"{'command':<22} {'median':>9} {'p90':>9} {'ratio':>7}   ({rounds} rounds, interleaved)")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"{name:<22} {median * 1000:8.1f}ms {p90 * 1000:8.1f}ms {median / base:6.2f}x")


if __name__ == "__main__":
    main()
