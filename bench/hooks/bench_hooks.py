"""Wall time of the hook commands, interpreter start-up included, against `python -c pass`.

Run: .venv/bin/python bench/hooks/bench_hooks.py [--rounds N]

Each round runs every command once, interleaved, so machine noise hits all
columns alike; medians and p90 are printed with the ratio to `python -c pass`.
Targets (issue 9): `hook prompt` and `hook tool` ≤ 4×; `hook stop` ≤ 4× plus
one round trip to the GitHub stand-in, measured in the same run as the hook
makes it: a new connection (TCP, TLS handshake, the `review_activity` query),
with the same client and the same trust setup.

The hooks trust what an agent's processes trust: SSL_CERT_FILE is a bundle of
the system's CAs plus the stand-in's (an assembled agent gets the system's
plus the firewall's), not the stand-in's CA alone, whose load would be ~40 ms
cheaper than the real thing. The stand-in listens on port 443 of a loopback
address, so run this as root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_smith.crew import scaffold_crew
from agent_smith.forge import ForgeClient, review_activity_once
from agent_smith.home.plan import SYSTEM_BUNDLES, ca_bundle
from agent_smith.hooks.context import cache_dir
from agent_smith.standins.github import GitHubStandin

PY = sys.executable
AGENT_SMITH = str(Path(PY).parent / "agent-smith")
NO_PR = {"tool_name": "Bash", "tool_input": {"command": "ls -la"}, "tool_response": {"stdout": "total 0\n"}}


def timed(argv: list[str], env: dict[str, str], stdin: str) -> float:
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def _measure(tmp: Path, standin: GitHubStandin, rounds: int) -> tuple[dict[str, list[float]], list[float], list[float]]:
    token = "agent-smith-placeholder-bench-token"
    standin.world.add_user("devbot", token, "devbot")
    standin.world.add_repo("devbot", "widgets", files={"README.md": "x\n"})
    crew = tmp / "crew"
    scaffold_crew(crew)
    text = (crew / "crew.yaml").read_text().replace("egress:\n", f"runtime:\n  state_dir: {tmp}/state\n\negress:\n", 1)
    text = text.replace(
        "  kind: github\n  base_url: https://api.github.com",
        f"  kind: github-enterprise\n  base_url: {standin.api_url}",
    )
    (crew / "crew.yaml").write_text(text)
    home = tmp / "home"
    home.mkdir()
    bundle = tmp / "ca-bundle.pem"
    system = next((b for b in SYSTEM_BUNDLES if b.is_file()), None)
    bundle.write_bytes(ca_bundle(system.read_bytes() if system else b"", standin.ca_path.read_bytes()))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "AGENT_NAME": "devbot",
        "AGENT_SMITH_CREW": str(crew),
        "GITHUB_TOKEN": token,
        "SSL_CERT_FILE": str(bundle),
        "AGENT_SMITH_STOP_WATCH": "0",
    }
    commands = {
        "python -c pass": ([PY, "-c", "pass"], ""),
        "hook prompt": ([AGENT_SMITH, "hook", "prompt"], json.dumps({"prompt": "hi", "session_id": "s"})),
        "hook tool (no PR)": ([AGENT_SMITH, "hook", "tool"], json.dumps(NO_PR)),
        "hook stop (1 check)": ([AGENT_SMITH, "hook", "stop"], json.dumps({"stop_hook_active": False})),
    }
    for argv, stdin in commands.values():
        timed(argv, env, stdin)  # warm the page cache and the hook snapshot
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, (argv, stdin) in commands.items():
            samples[name].append(timed(argv, env, stdin))
    return samples, asyncio.run(_round_trips(standin, env, rounds)), _fresh_round_trips(standin, env, rounds)


def _fresh_round_trips(standin: GitHubStandin, env: dict[str, str], rounds: int) -> list[float]:
    """The hook's query on a new connection each time (TCP + TLS handshake), as a new process must,
    trusting the bundle as the hook does (through the CA cache the hook runs built)."""
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        review_activity_once(standin.graphql_url, "devbot", ["devbot/widgets"], env, ca_cache=cache_dir(env) / "ca")
        out.append(time.perf_counter() - start)
    return out


async def _round_trips(standin: GitHubStandin, env: dict[str, str], rounds: int) -> list[float]:
    """The same query from the async client on a warm connection (for comparison only)."""
    client = ForgeClient.from_env(api_url=standin.api_url, graphql_url=standin.graphql_url, env=env)
    async with client:
        await client.review_activity("devbot", ["devbot/widgets"])
        out = []
        for _ in range(rounds):
            start = time.perf_counter()
            await client.review_activity("devbot", ["devbot/widgets"])
            out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as tmp:
        standin = GitHubStandin(Path(tmp) / "github", host="127.77.7.7", port=443).start()
        try:
            samples, round_trips, fresh_trips = _measure(Path(tmp), standin, rounds)
        finally:
            standin.stop()
    base = statistics.median(samples["python -c pass"])
    trip = statistics.median(round_trips)
    print(f"{'command':<22} {'median':>9} {'p90':>9} {'ratio':>7}   ({rounds} rounds, interleaved)")
    for name, values in samples.items():
        values.sort()
        median = statistics.median(values)
        p90 = values[int(len(values) * 0.9) - 1]
        print(f"{name:<22} {median * 1000:8.1f}ms {p90 * 1000:8.1f}ms {median / base:6.2f}x")
    stop = statistics.median(samples["hook stop (1 check)"])
    fresh = statistics.median(fresh_trips)
    print(f"one review_activity round trip, new connection, the hook's client, in process: {fresh * 1000:.1f}ms")
    print(f"one review_activity round trip, warm connection, ForgeClient (httpx), in process: {trip * 1000:.1f}ms")
    print(f"hook stop minus a new-connection round trip: {(stop - fresh) / base:.2f}x python -c pass (target ≤ 4x)")


if __name__ == "__main__":
    main()
