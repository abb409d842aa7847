"""Chat latency: a human's message → the channel notification reaching the model server.

Everything real but the model: a Synapse on loopback, the `claude` CLI in tmux
with the Matrix channel loaded (served by the supervisor's endpoint, as under
`up`), the scripted model server.
Baseline, measured in the same run against the same Synapse, alternating
with the channel samples: Synapse's own send → /sync round trip (a second
user long-polls /sync; the time from starting the send until that /sync
returns the event).

    baseline      send → another client's /sync returns it
    channel       send → the supervisor wrote the notification to claude's stream (its log)
    model server  send → the model server received the agent turn carrying the
                  <channel> block (claude's own handling included)
    after channel  per sample, the supervisor wrote it → the model server got it:
                  claude's share measured the same way with and without --no-debug
    of it claude  the CLI's own time from the notification to its API request
                  (its --debug-file log; absent with --no-debug)

Target: model server p50 ≤ 3× baseline p50.

The channel is hosted as `up` hosts it: the supervisor's HTTP endpoint with
devbot's channel (and its event tools and prompt context), in a process of
its own (`endpoint.py`). The agent's home is minimal unless `--agent-hooks`:
then its settings carry agent-smith's UserPromptSubmit hook as `assemble`
writes it, which claude runs before every turn, channel turns included: a
call of the `prompt_context` tool on devbot's `agent-smith-events` server.

    .venv/bin/python bench/chat/latency.py [samples] [--no-debug] [--agent-hooks]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from ruamel.yaml import YAML

from agent_smith.chat.config import TOKEN_FILE
from agent_smith.crew import CrewPaths, load_crew
from agent_smith.fsutil import write_atomic
from agent_smith.home import agent_hooks, api_key_suffix, seed_claude_json
from agent_smith.runtime import (
    PINNED_VERSION,
    PROMPT_READY,
    PermissionMode,
    Tmux,
    claude_launch,
    find_claude,
)
from agent_smith.standins import ModelServerThread, RequestKind, parse_script
from agent_smith.standins.synapse import MatrixUser, SynapseServer

API_KEY = "placeholder-model-key-for-the-chat-bench-0001"


def write_crew(root: Path, devbot: MatrixUser, alice: MatrixUser, room: str, homeserver: str) -> None:
    for name in ("devbot", "_shared"):
        (root / "agents" / name).mkdir(parents=True, exist_ok=True)
        (root / "agents" / name / "CLAUDE.md").write_text(f"# {name}\n")
    crew = {
        "version": 1,
        "crew": {"name": "bench"},
        # Alice is heard but no operator: her baseline messages, which name nobody, must not wake devbot.
        "agents": [
            {
                "name": "devbot",
                "matrix": {"user_id": devbot.user_id, "rooms": [room], "allowed_senders": [alice.user_id]},
            }
        ],
        "matrix": {"homeserver": homeserver},
        "runtime": {"state_dir": str(root / "state")},
    }
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)


def send(http: httpx.Client, user: MatrixUser, room: str, body: str) -> str:
    response = http.put(
        f"/_matrix/client/v3/rooms/{quote(room)}/send/m.room.message/{secrets.token_hex(8)}",
        headers={"Authorization": f"Bearer {user.access_token}"},
        json={"msgtype": "m.text", "body": body},
    )
    response.raise_for_status()
    event_id: str = response.json()["event_id"]
    return event_id


def baseline_sample(
    http: httpx.Client, sender: MatrixUser, watcher: MatrixUser, room: str, since: str
) -> tuple[float, str]:
    """One send → /sync round trip; returns (seconds, the next since token)."""
    marker = f"baseline {secrets.token_hex(4)}"
    found: dict[str, Any] = {}
    ready = threading.Event()

    def poll() -> None:
        token = since
        ready.set()
        while True:
            data = http.get(
                f"/_matrix/client/v3/sync?timeout=30000&since={quote(token)}",
                headers={"Authorization": f"Bearer {watcher.access_token}"},
            ).json()
            token = data["next_batch"]
            timeline = data.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
            if any(e.get("content", {}).get("body") == marker for e in timeline):
                found["at"], found["since"] = time.perf_counter(), token
                return

    thread = threading.Thread(target=poll)
    thread.start()
    ready.wait()
    time.sleep(0.05)  # let the long-poll reach Synapse before sending
    started = time.perf_counter()
    send(http, sender, room, marker)
    thread.join(30)
    return found["at"] - started, found["since"]


def _epoch(naive_utc: datetime) -> float:
    return (naive_utc - datetime(1970, 1, 1)).total_seconds()


class RequestTail:
    """The model server's request log, read from where the last look stopped.

    The model server runs in this process; re-parsing its whole log (~100 KB a
    request, MBs by the end) every 10 ms held the GIL and a core while the
    request being timed was coming in, and inflated the very figure measured.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def find(self, marker: str) -> float | None:
        """When devbot's agent turn carrying `marker` was logged, once it has been."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except FileNotFoundError:
            return None
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if marker.encode() not in line:
                continue
            entry = json.loads(line)
            if entry["agent"] == "devbot" and entry["kind"] == RequestKind.AGENT_TURN.value:
                return _epoch(datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ"))
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", type=int, nargs="?", default=20, help="samples of each (default 20)")
    parser.add_argument("--no-debug", action="store_true", help="without claude's debug log (and its share)")
    parser.add_argument("--agent-hooks", action="store_true", help="with the UserPromptSubmit hook `assemble` writes")
    args = parser.parse_args()
    samples = args.samples
    # claude's debug log gives the CLI's own share; --no-debug measures without its cost.
    debug_args = [] if args.no_debug else ["--debug-file"]
    with tempfile.TemporaryDirectory(prefix="chat-bench-") as tmp:
        root = Path(tmp)
        with (
            SynapseServer(root / "synapse") as hs,
            ModelServerThread(parse_script({"agents": {}}, "bench"), root / "model.jsonl") as model,
            contextlib.ExitStack() as supervisor,
        ):
            devbot, alice, watcher = (hs.register(n) for n in ("devbot", "alice", "watcher"))
            room = hs.create_room(alice, name="bench", invite=[devbot.user_id, watcher.user_id])
            hs.join(watcher, room)
            crew = root / "crew"
            write_crew(crew, devbot, alice, room, hs.url)
            write_atomic(
                CrewPaths.of(load_crew(crew, env={}).crew).agent_state("devbot") / TOKEN_FILE,
                devbot.access_token,
                mode=0o600,
            )
            chat_log = root / "chat.log"
            cli = Path(sys.executable).parent / "agent-smith"
            home, cwd = root / "home", root / "work"
            endpoint = supervisor.enter_context(
                subprocess.Popen(
                    [sys.executable, str(Path(__file__).with_name("endpoint.py")), str(crew), str(chat_log), str(home)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
            supervisor.callback(endpoint.terminate)
            assert endpoint.stdout is not None
            serving = json.loads(endpoint.stdout.readline() or "null")
            if not serving:
                raise SystemExit(f"the supervisor's endpoint did not start; see {chat_log}")
            auth = {"Authorization": f"Bearer {serving['token']}"}
            mcp: dict[str, Any] = {
                "mcpServers": {"matrix": {"type": "http", "url": serving["url"] + "/matrix", "headers": auth}}
            }
            debug = root / "claude-debug.log"
            hooks = args.agent_hooks
            if hooks:
                mcp["mcpServers"]["agent-smith-events"] = {"type": "http", "url": serving["url"], "headers": auth}
            config_dir = home / ".claude"
            cwd.mkdir(parents=True)
            config_dir.mkdir(parents=True)
            seeded = seed_claude_json(
                {},
                version=PINNED_VERSION,
                trusted_dirs=[str(cwd)],
                approved_key_suffix=api_key_suffix(API_KEY),
                growthbook_features={"tengu_harbor": True},
            )
            write_atomic(config_dir / ".claude.json", json.dumps(seeded), mode=0o600)
            settings: dict[str, Any] = {"skipDangerousModePermissionPrompt": True}
            if hooks:
                settings["hooks"] = {"UserPromptSubmit": agent_hooks(str(cli))["UserPromptSubmit"]}
            write_atomic(config_dir / "settings.json", json.dumps(settings))
            write_atomic(root / "mcp.json", json.dumps(mcp))
            launch = claude_launch(
                find_claude(),
                cwd=cwd,
                home=home,
                config_dir=config_dir,
                base_url=model.agent_url("devbot"),
                running_as_root=os.geteuid() == 0,
                api_key=API_KEY,
                permission_mode=PermissionMode.BYPASS_PERMISSIONS,
                mcp_config=root / "mcp.json",
                tool_search=False,
                extra_args=[
                    "--dangerously-load-development-channels",
                    "server:matrix",
                    *debug_args,
                    *([str(debug)] if debug_args else []),
                ],
            )
            tmux = Tmux(f"chat-bench-{os.getpid()}")
            http = httpx.Client(base_url=hs.url, trust_env=False, timeout=60)
            try:
                tmux.new_session("devbot", launch.argv, env=launch.env, cwd=launch.cwd)
                tmux.wait_for("devbot", "I am using this for local development", timeout=30)
                tmux.send_keys("devbot", "Enter")
                tmux.wait_for("devbot", PROMPT_READY, timeout=30)
                state = crew / "state" / "bench" / "agents" / "devbot" / "state" / "chat" / "state.json"
                deadline = time.monotonic() + 30
                while not state.exists() and time.monotonic() < deadline:
                    time.sleep(0.05)
                since = http.get(
                    "/_matrix/client/v3/sync?timeout=0", headers={"Authorization": f"Bearer {watcher.access_token}"}
                ).json()["next_batch"]
                requests = RequestTail(root / "model.jsonl")
                baseline: list[float] = []
                wake: list[float] = []
                full: list[float] = []
                after: list[float] = []
                # One warm-up each: the first turn of a session also asks for a title.
                for n in range(samples + 1):
                    seconds, since = baseline_sample(http, alice, watcher, room, since)
                    marker = f"ping {n} {secrets.token_hex(3)}"
                    started = time.time()
                    event_id = send(http, alice, room, f"@devbot {marker}")
                    deadline = time.monotonic() + 30
                    arrived = requests.find(marker)
                    while arrived is None and time.monotonic() < deadline:
                        time.sleep(0.01)
                        arrived = requests.find(marker)
                    if arrived is None:
                        raise SystemExit(f"the model server never saw {marker!r}; see {chat_log}")
                    woke = _wake_for(chat_log, event_id)
                    if n:
                        baseline.append(seconds)
                        full.append(arrived - started)
                        if woke is not None:
                            wake.append(woke - started)
                            after.append(arrived - woke)
                    time.sleep(1.0)  # let the agent's turn end before the next message
                cli_delays = _cli_delays(debug)[1:] if debug_args else []
                if hooks:
                    # A failing hook goes on without its context, and would be timed as a fast one.
                    last = model.requests(agent="devbot", kind=RequestKind.AGENT_TURN)[-1]
                    delivered = json.dumps(last.body["messages"]).count("[agent-smith] You are devbot")
                    if delivered != samples + 1:
                        raise SystemExit(f"the prompt context reached the model {delivered} times, not {samples + 1}")
            finally:
                http.close()
                tmux.kill_server()
        _report(baseline, wake, full, after, cli_delays)


def _wake_for(log: Path, event_id: str) -> float | None:
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("notified") and entry.get("event_id") == event_id:
            return _epoch(datetime.strptime(entry["time"], "%Y-%m-%dT%H:%M:%S.%fZ"))
    return None


def _cli_delays(debug: Path) -> list[float]:
    """From claude's debug log: each channel notification → the API request it started."""
    delays: list[float] = []
    received: float | None = None
    for line in debug.read_text(errors="replace").splitlines():
        stamp = line.split(" ", 1)[0]
        if "notifications/claude/channel" in line:
            received = _epoch(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ"))
        elif "[API REQUEST]" in line and received is not None:
            delays.append(_epoch(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")) - received)
            received = None
    return delays


def _report(baseline: list[float], wake: list[float], full: list[float], after: list[float], cli: list[float]) -> None:
    def row(name: str, values: list[float]) -> str:
        if not values:
            return f"{name:<14} (no samples)"
        p50 = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else p50
        ratio = p50 / statistics.median(baseline)
        return (
            f"{name:<14} p50 {p50 * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms   {ratio:5.2f}× baseline   n={len(values)}"
        )

    print(row("baseline", baseline))
    print(row("channel", wake))
    print(row("model server", full))
    print(row("  after channel", after) + "   (the chat server wrote it → the model server got it, per sample)")
    print(row("  of it claude", cli) + "   (claude's own notification → API request, from its debug log)")
    ratio = statistics.median(full) / statistics.median(baseline)
    print(f"target: model server p50 ≤ 3× baseline p50 → {ratio:.2f}× {'met' if ratio <= 3 else 'NOT met'}")


if __name__ == "__main__":
    main()
