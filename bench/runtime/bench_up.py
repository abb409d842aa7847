"""`agent-smith up` against bare claude sessions started by hand in tmux, side by side.

For N = 1, 3 and 6 agents, in the same run and against the same scripted
model server:
- baseline: N seeded homes, ``tmux new-session -d … claude`` each, timed
  until every pane shows claude's prompt (what a person does by hand). The
  prompt is watched for as the supervisor watches its agents: each pane piped
  to a file (as `up` pipes its panes), a look at the screens once a file grew
  (checked every 4 ms; 15 ms after the last look at the soonest) and at least
  every 50 ms. A look only every 50 ms found it 40–70 ms late, which made a
  bare claude look slower than it is;
- agent-smith: ``agent-smith up --crew D`` (CLI start-up, the supervisor, the
  embedded event log, the firewall, assembly, N sessions), timed until it
  returns, i.e. every agent is ready: the first `up` of a new crew, and `up`
  again after `down` (the firewall CA, the homes and a conversation to
  continue then exist, as on every day after the first).
Reported: both times, their ratio (target ≤ 1.5×), and the resident memory
agent-smith adds per agent (target ≤ 60 MB): the supervisor's RSS (which
also serves every agent's event tools over MCP) shared by N, plus each
agent's own extra processes (any MCP server or hook process of agent-smith's
under claude, its two `split` log pipes), measured once memory stopped
growing. The crew's
shared services, the egress firewall and the embedded nats-server, are not
per-agent costs: they are reported beside it, with the per-agent figure
they would make if they were shared by N as well.

With `--chat` every agent also has a Matrix user on a Synapse the bench
starts, and a room with the others: `up` then loads the Matrix channel too
(hosted by the supervisor), whose memory is counted with the rest.

Run: .venv/bin/python bench/runtime/bench_up.py [--rounds 2] [--sizes 1,3,6] [--chat]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from agent_smith.crew import CrewPaths, load_crew
from agent_smith.errors import AgentSmithError
from agent_smith.fsutil import write_atomic
from agent_smith.home import seed_claude_json
from agent_smith.listeners import free_port
from agent_smith.runtime import PINNED_VERSION, PROMPT_READY, Tmux, find_claude
from agent_smith.runtime.supervisor import _OUTPUT_POLL, _STARTING_GAP, _STARTING_INTERVAL
from agent_smith.runtime.tmux import DEFAULT_HEIGHT, DEFAULT_WIDTH
from agent_smith.standins import ModelServerThread, parse_script
from agent_smith.standins.synapse import SynapseServer

CLI = Path(sys.executable).parent / "agent-smith"
STUB = {
    "claudeAiOauth": {
        "accessToken": "agent-smith-placeholder-claude-access-token",
        "refreshToken": "agent-smith-placeholder-claude-refresh-token",
        "expiresAt": 4102444800000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }
}


def env_for(tmp: Path) -> dict[str, str]:
    return {"PATH": f"{CLI.parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp), "LANG": "C.UTF-8"}


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    frontier = [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def open_bare(tmux: Tmux, name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    """``tmux new-session -d … claude``, its pane piped to `log` in the same command list
    (as `up` opens its agents' sessions), so the file has the pane's first byte."""
    tmux.command(
        "new-session", "-d", "-s", name, "-x", str(DEFAULT_WIDTH), "-y", str(DEFAULT_HEIGHT), "-c", str(cwd),
        *[arg for key, value in env.items() for arg in ("-e", f"{key}={value}")], "--", *argv,
        ";", "pipe-pane", "-t", f"{name}:0.0", f"exec cat >> {shlex.quote(str(log))}",
        client_path=env["PATH"],
    )  # fmt: skip


def wait_prompts(tmux: Tmux, logs: dict[str, Path], timeout: float = 120) -> None:
    """Until every pane shows claude's prompt, seen with the supervisor's own cadence: a look at
    the screens once a log grew (_STARTING_GAP after the last look at the soonest), and at least
    every _STARTING_INTERVAL."""
    deadline = time.monotonic() + timeout
    pending = dict(logs)
    sizes: dict[str, int] = {}
    looked = float("-inf")
    while pending:
        now = time.monotonic()
        grown = any(_size(log) != sizes.get(name) for name, log in pending.items())
        if now - looked >= _STARTING_INTERVAL or (grown and now - looked >= _STARTING_GAP):
            looked = now
            for name, log in list(pending.items()):
                sizes[name] = _size(log)
                if PROMPT_READY.search(tmux.capture(name)):
                    del pending[name]
        if now > deadline:
            raise SystemExit(f"bare sessions not ready: {sorted(pending)}")
        time.sleep(_OUTPUT_POLL)


def _size(log: Path) -> int:
    return log.stat().st_size if log.exists() else -1


def bare(n: int, tmp: Path, url: str, claude: Path) -> float:
    tmux = Tmux(f"bench-bare-{uuid.uuid4().hex[:8]}")
    names = [f"agent{i}" for i in range(n)]
    logs = {name: tmp / "bare" / name / "pane.log" for name in names}
    for name in names:
        home = tmp / "bare" / name
        work = home / "work"
        (home / ".claude").mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        seeded = seed_claude_json({}, version=PINNED_VERSION, trusted_dirs=[str(work)])
        write_atomic(home / ".claude.json", json.dumps(seeded), 0o600)
        write_atomic(home / ".claude" / "settings.json", "{}\n")
        write_atomic(home / ".claude" / ".credentials.json", json.dumps(STUB), 0o600)
        logs[name].unlink(missing_ok=True)
    try:
        began = time.monotonic()
        for name in names:
            home = tmp / "bare" / name
            env = {
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "HOME": str(home),
                "LANG": "C.UTF-8",
                "TERM": "xterm-256color",
                "ANTHROPIC_BASE_URL": f"{url}/agents/{name}",
                "DISABLE_AUTOUPDATER": "1",
            }
            open_bare(tmux, name, [str(claude), "--permission-mode", "acceptEdits"], env, home / "work", logs[name])
        wait_prompts(tmux, logs)
        return time.monotonic() - began
    finally:
        tmux.kill_server()


def write_crew(root: Path, n: int, url: str, synapse: SynapseServer | None) -> str:
    socket_name = f"bench-up-{uuid.uuid4().hex[:8]}"
    (root / "agents" / "_shared").mkdir(parents=True)
    (root / "agents" / "_shared" / "CLAUDE.md").write_text("# Shared\n")
    (root / "agents" / "_shared" / "settings.json").write_text("{}\n")
    (root / "agents" / "_shared" / ".credentials.json").write_text(json.dumps(STUB))
    agents = []
    for i in range(n):
        name = f"agent{i}"
        (root / "agents" / name).mkdir()
        (root / "agents" / name / "CLAUDE.md").write_text(f"# {name}\n")
        agents.append({"name": name, "env": {"ANTHROPIC_BASE_URL": f"{url}/agents/{name}"}})
    listen = f"127.0.0.1:{free_port()}"
    crew: dict[str, Any] = {
        "version": 1,
        "crew": {"name": "bench"},
        "agents": agents,
        "egress": {"listen": listen},
        "runtime": {"state_dir": str(root.parent / f"{root.name}-state"), "tmux_socket": socket_name},
    }
    tokens: dict[str, str] = {}
    if synapse is not None:
        users = {a["name"]: synapse.register(f"{a['name']}-{uuid.uuid4().hex[:6]}") for a in agents}
        first, *others = users.values()
        room = synapse.create_room(first, name=root.name, invite=[u.user_id for u in others])
        for user in others:
            synapse.join(user, room)
        for agent in agents:
            agent["matrix"] = {"user_id": users[agent["name"]].user_id, "rooms": [room]}
            tokens[agent["name"]] = users[agent["name"]].access_token
        crew["matrix"] = {"homeserver": synapse.url}
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)
    paths = CrewPaths.of(load_crew(root, {}).crew)
    for name, token in tokens.items():
        write_atomic(paths.agent_state(name) / "matrix_access_token", token + "\n", 0o600)
    return socket_name


def ours(
    n: int, tmp: Path, url: str, round_no: int, synapse: SynapseServer | None
) -> list[tuple[float, dict[str, float]]]:
    """(time to ready, memory) of a first `up` of a new crew, then of `up` again after `down`:
    the crew's state then exists (the firewall CA, the homes, a conversation to continue)."""
    root = tmp / f"crew-{n}-{round_no}"
    socket_name = write_crew(root, n, url, synapse)
    env = env_for(tmp)
    found = []
    for _ in ("first", "again"):
        try:
            began = time.monotonic()
            up = subprocess.run(
                [str(CLI), "up", "--crew", str(root), "--no-proxy", "127.0.0.1"],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            took = time.monotonic() - began
            if up.returncode != 0:
                raise SystemExit(f"up failed: {up.stderr.strip()}")
            found.append((took, settled(root, socket_name, n)))
        finally:
            subprocess.run(
                [str(CLI), "down", "--crew", str(root)], env=env, capture_output=True, timeout=120, check=False
            )
    return found


def _proc(pid: int, name: str) -> bytes:
    """A /proc file of a process that may exit while we look (a short-lived hook): empty then."""
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def settled(root: Path, socket_name: str, n: int, timeout: float = 15.0) -> dict[str, float]:
    """`measure` once memory stopped growing: `up` returns at the prompt, while Claude Code
    is still connecting to its MCP tools (served by the supervisor) and starting any MCP
    server of its own; a half-connected crew would read low."""
    deadline = time.monotonic() + timeout
    time.sleep(1.0)
    last = measure(root, socket_name, n)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = measure(root, socket_name, n)
        if abs(now["per_agent_mb"] - last["per_agent_mb"]) < 0.25:
            return now
        last = now
    return last


def measure(root: Path, socket_name: str, n: int) -> dict[str, float]:
    state = root.parent / f"{root.name}-state" / "bench"
    supervisor = int((state / "runtime" / "supervisor.pid").read_text())
    firewall = int((state / "runtime" / "firewall.pid").read_text())
    nats = int(json.loads((state / "nats" / "server.json").read_text())["pid"])
    tmux = Tmux(socket_name)
    server = tmux.server_pid()
    pipes = [pid for pid in descendants(server or 0) if _proc(pid, "comm").strip() == b"split"]
    per_agent_extra = 0
    servers = 0
    for pane in tmux.pane_pids():
        for pid in descendants(pane):
            cmdline = _proc(pid, "cmdline")
            if b"agent-smith" in cmdline:
                per_agent_extra += rss_kib(pid)
                servers += b"\0mcp\0" in cmdline
    supervisor_kib, firewall_kib, nats_kib = rss_kib(supervisor), rss_kib(firewall), rss_kib(nats)
    pipes_kib = sum(rss_kib(pid) for pid in pipes)
    ours_kib = supervisor_kib + pipes_kib + per_agent_extra
    return {
        "supervisor_mb": supervisor_kib / 1024,
        "firewall_mb": firewall_kib / 1024,
        "nats_mb": nats_kib / 1024,
        "mcp_and_hooks_mb": per_agent_extra / 1024,
        "mcp_servers": servers,
        "log_pipes_mb": pipes_kib / 1024,
        "per_agent_mb": ours_kib / 1024 / n,
        "with_services_mb": (ours_kib + firewall_kib + nats_kib) / 1024 / n,
    }


def positive(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a clear usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def positives(text: str) -> list[int]:
    """An argparse type: comma-separated whole numbers of at least 1."""
    return [positive(part.strip()) for part in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=positive, default=2)
    parser.add_argument("--sizes", type=positives, default=[1, 3, 6], help="agents per run, e.g. 1,3,6")
    parser.add_argument("--chat", action="store_true", help="every agent with the Matrix channel, on a real Synapse")
    args = parser.parse_args()
    sizes: list[int] = args.sizes
    claude = find_claude()
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-smith-bench-runtime-")))
        synapse = stack.enter_context(SynapseServer(tmp / "synapse")) if args.chat else None
        script = parse_script({"agents": {}}, "bench")
        server = ModelServerThread(script, tmp / "model.jsonl")
        server.start()
        try:
            rows: list[dict[str, Any]] = []
            for n in sizes:
                base_times: list[float] = []
                runs: list[list[tuple[float, dict[str, float]]]] = []
                for round_no in range(args.rounds):
                    # Alternate the order so neither side always runs on a warmer machine.
                    if round_no % 2 == 0:
                        base_times.append(bare(n, tmp / f"b{n}-{round_no}", server.url, claude))
                        runs.append(ours(n, tmp, server.url, round_no, synapse))
                    else:
                        runs.append(ours(n, tmp, server.url, round_no, synapse))
                        base_times.append(bare(n, tmp / f"b{n}-{round_no}", server.url, claude))
                base = statistics.median(base_times)
                for index, which in enumerate(("first up", "up again")):
                    our = statistics.median(r[index][0] for r in runs)
                    memories = [r[index][1] for r in runs]
                    memory = {k: statistics.median(m[k] for m in memories) for k in memories[0]}
                    rows.append(
                        {"agents": n, "which": which, "bare_s": base, "up_s": our, "ratio": our / base, **memory}
                    )
                    print(
                        f"{n} agent(s), {which}: bare claude in tmux {base:.2f}s, agent-smith up {our:.2f}s, "
                        f"ratio {our / base:.2f}x (target <= 1.5x); added RSS per agent {memory['per_agent_mb']:.1f} MB "
                        f"(target <= 60; supervisor {memory['supervisor_mb']:.1f}, "
                        f"MCP servers + hooks {memory['mcp_and_hooks_mb']:.1f}, "
                        f"log pipes {memory['log_pipes_mb']:.1f} MB in all); shared services: "
                        f"firewall {memory['firewall_mb']:.1f}, nats {memory['nats_mb']:.1f} MB "
                        f"({memory['with_services_mb']:.1f} MB per agent with them)",
                        flush=True,
                    )
            print(json.dumps(rows, indent=2))
        finally:
            server.stop()


if __name__ == "__main__":
    try:
        main()
    except AgentSmithError as exc:
        sys.exit(f"bench_up: {exc}")
