"""The supervisor's HTTP endpoint: /metrics, /healthz, and the agents' MCP servers at /mcp.

The event tools (/mcp) and the Matrix channel (/mcp/matrix) run inside the
supervisor rather than as MCP processes per agent (a Python process each,
~40–60 MB and ~0.25 s of CPU while claude boots).
Each agent reaches them with its own bearer token, kept in its state
directory (mode 0600), so a tool call acts as the agent that made it. The
endpoint's address and the token reach claude through two environment
variables of its pane, which the assembled ~/.claude.json names.

A restarted supervisor listens where its predecessor did when
`runtime.metrics_listen` leaves the port free to choose, so the agents it
adopts (which keep their environment) still reach their tools.

The connections themselves: `agent_smith.runtime.httpserve`.
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from agent_smith.crew import CrewPaths
from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.runtime.rundir import RunDir
from agent_smith.runtime.services import parse_listen

MCP_PATH = "/mcp"
# The Matrix channel's server, beside the event tools (the assembled entry: their URL plus
# `home.plan.CHAT_URL_SUFFIX`; not imported from there, which would load assembly before the fork).
CHAT_PATH = MCP_PATH + "/matrix"
TOKEN_FILE = "mcp.token"
# A pod listens on every address (for Prometheus); its agents, in the same pod, use loopback.
_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def http_socket(listen: str, run_dir: RunDir) -> socket.socket:
    """A listening socket for `runtime.metrics_listen`; port 0 prefers the previous supervisor's port."""
    host, port = parse_listen(listen, "runtime.metrics_listen")
    previous = _previous_port(run_dir, host) if port == 0 else None
    if previous is not None:
        try:
            return _listen(host, previous)
        except OSError:
            pass  # taken meanwhile: any free port, as configured
    try:
        return _listen(host, port)
    except OSError as exc:
        raise UsageError(f"runtime.metrics_listen: cannot listen on {host}:{port} ({exc.strerror})") from exc


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _previous_port(run_dir: RunDir, host: str) -> int | None:
    url = ((run_dir.read_status() or {}).get("supervisor") or {}).get("metrics")
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        return parts.port if parts.hostname == host else None
    except ValueError:
        return None


@dataclass(frozen=True)
class McpEndpoint:
    """Where the agents' MCP tools are served, and each agent's token for them."""

    url: str
    paths: CrewPaths

    @classmethod
    def at(cls, sock: socket.socket, paths: CrewPaths) -> McpEndpoint:
        """The endpoint on `sock`, as the agents (on this host) reach it: a wildcard bind by loopback."""
        host, port = sock.getsockname()[:2]
        host = _LOCAL.get(host, host)
        shown = f"[{host}]" if ":" in host else host
        return cls(f"http://{shown}:{port}{MCP_PATH}", paths)

    @property
    def host(self) -> str:
        """The host the agents reach the endpoint on (what their NO_PROXY must name)."""
        return urlsplit(self.url).hostname or ""

    def token_for(self, agent: str) -> str:
        """The agent's token: made once, then the same for every supervisor of this crew."""
        path = self.paths.agent_state(agent) / TOKEN_FILE
        try:
            try:
                token = path.read_text().strip()
            except FileNotFoundError:
                token = ""
            if not token:
                token = secrets.token_hex(32)
                path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(path, token + "\n", 0o600)
        except OSError as exc:
            raise OperationError(f"agent {agent}'s MCP token {path}: {exc.strerror or exc}") from exc
        return token
