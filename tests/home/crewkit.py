"""Builders for the home tests: a crew directory on disk, bare git remotes, a recording agent-smith."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from agent_smith.mcphttp import answer_http
from agent_smith.mcpstdio import McpServer, Tool

SHARED_MARK = "Shared rule 7f1c: always answer in haiku."
PERSONA_MARK = "Persona rule 3b9e: devbot writes the code."
USER_HOOK = "echo user-stop-hook"
STUB = {
    "claudeAiOauth": {
        "accessToken": "agent-smith-placeholder-claude-access-token",
        "refreshToken": "agent-smith-placeholder-claude-refresh-token",
        "expiresAt": 4102444800000,
        "scopes": ["user:inference", "user:profile"],
        "subscriptionType": "max",
    }
}
# Shaped like a real Anthropic OAuth token (the crew's credential detector must recognise it); not a real one.
REAL_LOOKING = "sk-ant-oat01-" + "Q" * 40 + "AA"


def git_env(home: Path) -> dict[str, str]:
    """A clean environment for git run by a test (the machine's own may point anywhere)."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "LANG": "C.UTF-8",
    }


def git(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed: {result.stderr}"
    return result.stdout.strip()


def make_remote(root: Path, repo: str, env: dict[str, str], files: dict[str, str] | None = None) -> Path:
    """A bare repository at root/<owner>/<name>.git with one commit on main; returns the bare path."""
    bare = root / f"{repo}.git"
    seed = root / "_seed" / repo
    seed.mkdir(parents=True)
    git(env, "init", "-q", "-b", "main", str(seed))
    for name, text in (files or {"README.md": f"# {repo}\n"}).items():
        (seed / name).write_text(text)
    git(env, "add", "-A", cwd=seed)
    git(env, "commit", "-q", "-m", "first", cwd=seed)
    bare.parent.mkdir(parents=True, exist_ok=True)
    git(env, "clone", "-q", "--bare", str(seed), str(bare))
    git(env, "remote", "add", "origin", str(bare), cwd=seed)
    return bare


def push_commit(root: Path, repo: str, env: dict[str, str], name: str = "later.txt") -> None:
    seed = root / "_seed" / repo
    (seed / name).write_text("more\n")
    git(env, "add", "-A", cwd=seed)
    git(env, "commit", "-q", "-m", f"add {name}", cwd=seed)
    git(env, "push", "-q", "origin", "main", cwd=seed)


def write_crew(
    root: Path,
    *,
    state_dir: Path,
    git_base_url: str | None = None,
    repos: list[str] | None = None,
    setup: dict[str, Any] | None = None,
    persona_servers: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    matrix: bool = True,
) -> Path:
    """A two-agent crew (devbot, reviewbot) in the established persona format."""
    agents = root / "agents"
    (agents / "_shared").mkdir(parents=True)
    (agents / "_shared" / "CLAUDE.md").write_text(f"# Crew rules\n\n{SHARED_MARK}\n")
    base_settings = {
        "permissions": {"allow": ["Bash(git:*)", "Read"], "deny": ["Read(~/.claude/.credentials.json)"]},
        "hooks": {"Stop": [{"hooks": [{"type": "command", "command": USER_HOOK}]}]},
        "env": {"DISABLE_AUTOUPDATER": "1", "CREW_SETTING": "kept"},
    }
    (agents / "_shared" / "settings.json").write_text(json.dumps(settings or base_settings, indent=2))
    (agents / "_shared" / ".credentials.json").write_text(json.dumps(STUB, indent=2))
    for name in ("devbot", "reviewbot"):
        (agents / name / "subagents").mkdir(parents=True)
        mark = PERSONA_MARK if name == "devbot" else "Persona rule: reviewbot reviews."
        (agents / name / "CLAUDE.md").write_text(f"# {name}\n\n{mark}\n")
        servers = (persona_servers or {}) if name == "devbot" else {}
        (agents / name / "mcp.json").write_text(json.dumps({"mcpServers": servers}, indent=2))
    (agents / "devbot" / "subagents" / "test-writer.md").write_text(
        "---\nname: test-writer\ndescription: Writes focused tests for a change.\n---\n\nYou write tests.\n"
    )
    devbot: dict[str, Any] = {
        "name": "devbot",
        "role": "developer",
        "repos": repos or [],
        "github_login": "devbot-gh",
        "git": {"name": "Dev Bot", "email": "devbot@example.invalid"},
    }
    reviewbot: dict[str, Any] = {"name": "reviewbot", "role": "reviewer"}
    if matrix:
        devbot["matrix"] = {"user_id": "@devbot:localhost", "rooms": ["#crew:localhost"]}
        reviewbot["matrix"] = {"user_id": "@reviewbot:localhost"}
    if setup:
        devbot["setup"] = setup
    crew: dict[str, Any] = {
        "version": 1,
        "crew": {"name": "t-crew"},
        "agents": [devbot, reviewbot],
        "runtime": {"state_dir": str(state_dir)},
    }
    if matrix:
        crew["matrix"] = {"homeserver": "http://127.0.0.1:8008", "operators": ["@op:localhost"]}
    if git_base_url:
        crew["forge"] = {"git_base_url": git_base_url}
    with (root / "crew.yaml").open("w") as fh:
        YAML().dump(crew, fh)
    return root


RECORDER = """\
import json, os, sys
LOG = {log!r}
argv = sys.argv[1:]

def record(entry):
    with open(LOG, "a") as fh:
        fh.write(json.dumps(entry) + "\\n")

if argv[:1] == ["hook"]:
    data = sys.stdin.read()
    env = {{k: os.environ.get(k) for k in ("AGENT_NAME", "SSL_CERT_FILE", "HTTPS_PROXY", "GITHUB_TOKEN")}}
    record({{"argv": argv, "stdin": data, "env": env}})
    sys.exit(0)
if argv[:1] == ["mcp"]:
    server = argv[1]
    record({{"argv": argv, "env": {{k: v for k, v in os.environ.items() if k.startswith(("AGENT_", "MATRIX_", "NATS_"))}}}})
    for line in sys.stdin:
        msg = json.loads(line)
        if "id" not in msg:
            continue
        method = msg.get("method")
        if method == "initialize":
            result = {{"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {{"tools": {{}}}},
                      "serverInfo": {{"name": server, "version": "0"}}}}
        elif method == "tools/list":
            record({{"argv": argv, "method": method}})
            result = {{"tools": [{{"name": server + "_probe", "description": "probe of " + server,
                                 "inputSchema": {{"type": "object", "properties": {{}}}}}}]}}
        else:
            print(json.dumps({{"jsonrpc": "2.0", "id": msg["id"], "error": {{"code": -32601, "message": "no"}}}}), flush=True)
            continue
        print(json.dumps({{"jsonrpc": "2.0", "id": msg["id"], "result": result}}), flush=True)
    sys.exit(0)
record({{"argv": argv}})
"""


def recording_command(directory: Path) -> tuple[Path, Path]:
    """An executable standing in for agent-smith: logs hook calls, serves MCP; returns (command, log)."""
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "calls.jsonl"
    script = directory / "agent-smith"
    script.write_text(f"#!{sys.executable}\n" + RECORDER.format(log=str(log)))
    script.chmod(0o755)
    return script, log


def calls(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root: contents, mode and mtime_ns — to prove a run changed nothing."""
    out: dict[str, tuple[bytes, int, int]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and ".git" not in path.parts:
            st = path.stat()
            out[str(path.relative_to(root))] = (path.read_bytes(), st.st_mode & 0o777, st.st_mtime_ns)
    return out


class McpHttpStub:
    """The supervisor's MCP endpoint stood in for: one agent's token; at ``/mcp`` an `events_probe`
    tool and `tools` (the supervisor's own, say), at ``/mcp/matrix`` a `chat_probe` tool; each
    request logged to the recording log like the stdio servers'
    (``{"argv": ["mcp", "events"], "method": …, "tool": …}``, ``["mcp", "chat"]``)."""

    def __init__(self, log: Path, token: str, tools: Sequence[Tool] = ()) -> None:
        def probe(server: str, tool: str, *more: Tool) -> McpServer:
            async def answer(_: dict[str, Any]) -> str:
                return "probed"

            return McpServer(server, "1.0", [Tool(tool, "Probe.", {"type": "object"}, answer), *more])

        by_path = {
            "/mcp": ("events", {token: probe("agent-smith-events", "events_probe", *tools)}),
            "/mcp/matrix": ("chat", {token: probe("matrix", "chat_probe")}),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self._answer()

            def do_GET(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                kind, servers = by_path.get(self.path, ("unknown", {}))
                answer = asyncio.run(answer_http(servers, self.command, headers, body))
                message = json.loads(body) if body and self.command == "POST" else {}
                with log.open("a") as fh:
                    entry = {"argv": ["mcp", kind], "method": message.get("method"), "status": answer.status}
                    if message.get("method") == "tools/call":
                        entry["tool"] = message["params"]["name"]
                    fh.write(json.dumps({**entry, "authorized": answer.status != 401}) + "\n")
                self.send_response(answer.status, answer.reason)
                for name, value in answer.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, *args: object) -> None:
                return None

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/mcp"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
