"""Workspace repositories with real git: clones with progress, fast-forwards, local work left alone."""

from __future__ import annotations

import base64
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from agent_smith.crew import load_crew
from agent_smith.errors import OperationError
from agent_smith.home import AssembleOptions, AssemblyReport, RepoAction, assemble
from agent_smith.home.repos import FirewallRecords, sync_repo
from tests.home.crewkit import git, git_env, make_remote, push_commit, recording_command, write_crew

REPO = "acme/widgets"


class Remotes:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "remotes"
        self.env = git_env(tmp_path / "githome")
        (tmp_path / "githome").mkdir()
        self.state = tmp_path / "state"
        make_remote(self.root, REPO, self.env)
        self.crew = write_crew(
            tmp_path / "crew", state_dir=self.state, git_base_url=f"file://{self.root}", repos=[REPO]
        )
        self.command, _ = recording_command(tmp_path / "bin")
        self.progress: list[str] = []

    @property
    def checkout(self) -> Path:
        return self.state / "t-crew" / "agents" / "devbot" / "workspace" / REPO

    def assemble(self, **kw: object) -> AssemblyReport:
        return assemble(
            load_crew(self.crew, env={}),
            "devbot",
            AssembleOptions(agent_smith_command=str(self.command), env={}, progress=self.progress.append, **kw),  # type: ignore[arg-type]
        )


@pytest.fixture
def remotes(tmp_path: Path) -> Remotes:
    return Remotes(tmp_path)


def test_clones_with_progress_then_fast_forwards(remotes: Remotes) -> None:
    report = remotes.assemble()
    [outcome] = report.repos
    assert outcome.action is RepoAction.cloned
    assert (remotes.checkout / "README.md").read_text() == f"# {REPO}\n"
    assert "Cloning into" in "".join(remotes.progress)
    assert not list(remotes.checkout.parent.glob(".*partial*"))
    agent_env = {**remotes.env, "HOME": str(report.home)}
    assert git(agent_env, "config", "user.name", cwd=remotes.checkout) == "Dev Bot"

    assert remotes.assemble().repos[0].action is RepoAction.up_to_date
    push_commit(remotes.root, REPO, remotes.env)
    report = remotes.assemble()
    assert report.repos[0].action is RepoAction.fast_forwarded
    assert (remotes.checkout / "later.txt").exists()
    assert report.changed


def test_a_dirty_checkout_behind_its_remote_is_left_alone(remotes: Remotes) -> None:
    remotes.assemble()
    (remotes.checkout / "README.md").write_text("my unfinished work\n")
    push_commit(remotes.root, REPO, remotes.env)
    report = remotes.assemble()
    assert report.repos[0].action is RepoAction.left_alone
    assert (remotes.checkout / "README.md").read_text() == "my unfinished work\n"
    assert not (remotes.checkout / "later.txt").exists()
    assert any("uncommitted changes" in w and REPO in w for w in report.warnings)


def test_a_diverged_checkout_is_left_alone(remotes: Remotes) -> None:
    remotes.assemble()
    env = {**remotes.env, "HOME": str(remotes.state / "t-crew" / "agents" / "devbot" / "home")}
    (remotes.checkout / "mine.txt").write_text("local commit\n")
    git(env, "add", "mine.txt", cwd=remotes.checkout)
    git(env, "commit", "-q", "-m", "local", cwd=remotes.checkout)
    head = git(env, "rev-parse", "HEAD", cwd=remotes.checkout)
    push_commit(remotes.root, REPO, remotes.env)
    report = remotes.assemble()
    assert report.repos[0].action is RepoAction.left_alone
    assert "diverged" in report.repos[0].reason
    assert git(env, "rev-parse", "HEAD", cwd=remotes.checkout) == head


def test_a_repository_that_cannot_be_cloned_is_one_line(remotes: Remotes) -> None:
    crew_yaml = remotes.crew / "crew.yaml"
    crew_yaml.write_text(crew_yaml.read_text().replace(REPO, "acme/missing"))
    with pytest.raises(OperationError) as caught:
        remotes.assemble()
    message = str(caught.value)
    assert message.startswith("cannot clone acme/missing from file://")
    assert "\n" not in message
    workspace = remotes.checkout.parent
    assert not list(workspace.glob("*"))
    assert not list(workspace.glob(".*"))


def test_a_remote_that_stops_answering_ends_the_clone(tmp_path: Path) -> None:
    """Accepted, never answered (a stalled proxy or server): git's low-speed limit ends it, set by
    default; here shortened through the environment, which wins."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        accepted: list[socket.socket] = []
        threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/acme/stalled.git"
        env = {**git_env(tmp_path / "githome"), "GIT_HTTP_LOW_SPEED_TIME": "2"}
        began = time.monotonic()
        with pytest.raises(OperationError, match=r"^cannot clone acme/stalled from .*Operation too slow"):
            sync_repo("acme/stalled", url, tmp_path / "work" / "stalled", env)
        assert time.monotonic() - began < 30
        for conn in accepted:
            conn.close()
    assert not list((tmp_path / "work").iterdir())


def test_dry_run_says_it_would_clone(remotes: Remotes) -> None:
    report = remotes.assemble(dry_run=True)
    assert report.repos[0].action is RepoAction.would_clone
    assert not remotes.state.exists()


class _AuthRecorder(http.server.SimpleHTTPRequestHandler):
    """Dumb-protocol git over HTTP that demands Basic auth and records what it was given."""

    seen: list[str]

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization")
        if auth is None:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.seen.append(base64.b64decode(auth.split()[1]).decode())
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def auth_server(tmp_path: Path) -> Iterator[tuple[str, list[str], Path]]:
    root = tmp_path / "http-remotes"
    seen: list[str] = []
    handler = type("Handler", (_AuthRecorder,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen, root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_git_gets_the_forge_placeholder_from_the_credential_helper(
    tmp_path: Path, auth_server: tuple[str, list[str], Path]
) -> None:
    url, seen, root = auth_server
    env = git_env(tmp_path / "githome")
    (tmp_path / "githome").mkdir()
    bare = make_remote(root, REPO, env)
    git(env, "update-server-info", cwd=bare)
    crew = write_crew(tmp_path / "crew", state_dir=tmp_path / "state", git_base_url=url, repos=[REPO])
    command, _ = recording_command(tmp_path / "bin")
    report = assemble(
        load_crew(crew, env={}),
        "devbot",
        AssembleOptions(agent_smith_command=str(command), env={}, no_proxy=("127.0.0.1",)),
    )
    assert report.repos[0].action is RepoAction.cloned
    assert seen
    assert set(seen) == {"x-access-token:agent-smith-placeholder-github-token"}


def _refused_clone(tmp_path: Path, status: str, firewall: FirewallRecords) -> str:
    """The error of a clone of acme/widgets whose proxy answers its CONNECT with `status`."""
    with socket.create_server(("127.0.0.1", 0)) as proxy:

        def answer() -> None:
            conn, _ = proxy.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())

        threading.Thread(target=answer, daemon=True).start()
        env = {**git_env(tmp_path / "githome"), "HTTPS_PROXY": f"http://127.0.0.1:{proxy.getsockname()[1]}"}
        with pytest.raises(OperationError) as caught:
            sync_repo(
                "acme/widgets",
                "https://forge.test/acme/widgets.git",
                tmp_path / "work" / "widgets",
                env,
                firewall=firewall,
            )
    message = str(caught.value)
    assert "\n" not in message
    return message


def _audit_line(agent: str, host: str, status: int, reason: str) -> str:
    entry = {"agent": agent, "method": "CONNECT", "host": host, "port": 443, "status": status}
    return json.dumps({**entry, "decision": "denied", "reason": reason}) + "\n"


@pytest.mark.parametrize(
    ("status", "meaning", "reason"),
    [
        ("403 Forbidden", "the egress firewall refused it", "forge.test is not on the allowlist"),
        ("502 Bad Gateway", "the egress firewall could not reach the host", "cannot resolve forge.test"),
    ],
)
def test_a_clone_the_firewall_does_not_carry_quotes_its_reason(
    tmp_path: Path, status: str, meaning: str, reason: str
) -> None:
    """git says only "CONNECT tunnel failed, response 502": a newcomer's first clone (of the scaffold's
    example repository) failed that way, and the event log the hint named had stopped with `up`. The
    firewall's audit line for this agent and host (not another's, not an older one) is quoted."""
    audit = tmp_path / "audit.jsonl"
    code = int(status.split()[0])
    audit.write_text(
        _audit_line("devbot", "forge.test", code, "an older reason")
        + _audit_line("devbot", "forge.test", code, reason)
        + _audit_line("reviewbot", "forge.test", code, "reviewbot's reason")
        + _audit_line("devbot", "other.test", code, "another host's reason")
    )
    message = _refused_clone(tmp_path, status, FirewallRecords("devbot", audit, tmp_path / "firewall.log"))
    assert message.endswith(f"CONNECT tunnel failed, response {code} ({meaning}: {reason})")


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        ("403 Forbidden", "the egress firewall refused it: its log {log} says why"),
        ("502 Bad Gateway", "the egress firewall could not reach the host: its log {log} says why"),
        ("407 Proxy Authentication Required", "the egress firewall did not take the agent's proxy password"),
    ],
)
def test_a_clone_refused_without_an_audit_line_names_the_firewall_log(tmp_path: Path, status: str, hint: str) -> None:
    log = tmp_path / "logs" / "firewall.log"
    message = _refused_clone(tmp_path, status, FirewallRecords("devbot", tmp_path / "no-audit.jsonl", log))
    assert message.endswith(f"CONNECT tunnel failed, response {status.split()[0]} ({hint.format(log=log)})")
    assert "events query" not in message
