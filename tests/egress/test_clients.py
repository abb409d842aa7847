"""Real clients through the firewall: curl, git, Node (undici), gh and the claude CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from agent_smith.egress.claude import ClaudeTokens
from agent_smith.fsutil import write_atomic
from agent_smith.home import seed_claude_json
from agent_smith.runtime import PINNED_VERSION, Tmux, claude_launch, start_in_tmux
from tests.egress.helpers import assert_never_contains, files_under
from tests.fixtures.egress import (
    GITHUB_PLACEHOLDER,
    STUB_ACCESS,
    STUB_REFRESH,
    EgressUpstream,
    StartFirewall,
    _git_env,
)
from tests.fixtures.model import StartModelServer
from tests.fixtures.processes import LeakCheck

REPO_ROOT = Path(__file__).resolve().parents[2]


def _need(binary: str) -> str:
    found = shutil.which(binary)
    if found is None:
        pytest.fail(f"{binary} is needed: run scripts/install.sh")
    return found


def _run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.real
def test_curl(egress_firewall: StartFirewall, egress_upstream: EgressUpstream, tmp_path: Path) -> None:
    fw = egress_firewall()
    env = fw.client_env("devbot", tmp_path / "home")
    ok = _run(
        [
            _need("curl"),
            "-sS",
            "-H",
            f"Authorization: token {GITHUB_PLACEHOLDER}",
            "https://api.github.test/api/v3/user",
        ],
        env,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["login"] == "devbot"
    refused = _run([_need("curl"), "-sS", "https://evil.test/"], env)
    assert refused.returncode != 0
    assert "403" in refused.stderr
    assert_never_contains([ok.stdout, ok.stderr, refused.stderr], egress_upstream.world.github_secret)


@pytest.mark.real
@pytest.mark.parametrize("http", ["--http1.1", "--http2"])
def test_curl_downloads_a_large_body_scrubbed_where_the_secret_straddles_a_read(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, tmp_path: Path, http: str
) -> None:
    # The upstream pauses in the middle of the secret, so the firewall's read ends inside it.
    fw = egress_firewall()
    env = fw.client_env("devbot", tmp_path / "home")
    size = 3 * 1024 * 1024
    out = tmp_path / "body"
    got = _run(
        [
            _need("curl"),
            "-sS",
            http,
            "-o",
            str(out),
            "-w",
            "%{http_version}",
            f"https://api.github.test/big-leak/{size}",
        ],
        env,
    )
    assert got.returncode == 0, got.stderr
    assert got.stdout == ("2" if http == "--http2" else "1.1")
    secret = egress_upstream.world.github_secret
    body = out.read_bytes()
    assert body.count(GITHUB_PLACEHOLDER.encode()) == 2
    assert body.endswith(GITHUB_PLACEHOLDER.encode())
    assert len(body) == size - 2 * (len(secret) - len(GITHUB_PLACEHOLDER))
    assert_never_contains([body, got.stderr], secret)
    [entry] = fw.audit()
    assert entry["bytes_down"] == len(body)


@pytest.mark.real
def test_git_clone_and_push_with_the_placeholder(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, bare_git_repo: Path, tmp_path: Path
) -> None:
    fw = egress_firewall()
    _need("git")
    env = {
        **fw.client_env("devbot", tmp_path / "home"),
        **{k: v for k, v in _git_env(tmp_path / "home").items() if k.startswith("GIT_")},
    }
    url = f"https://x-access-token:{GITHUB_PLACEHOLDER}@github.test/git/widgets.git"
    clone = _run(["git", "clone", "-q", url, str(tmp_path / "work")], env)
    assert clone.returncode == 0, clone.stderr
    assert (tmp_path / "work" / "README.md").read_text() == "widgets\n"
    (tmp_path / "work" / "CHANGE.md").write_text("a change through the firewall\n")
    for argv in (
        ["git", "add", "."],
        ["git", "commit", "-q", "-m", "through the firewall"],
        ["git", "push", "-q", "origin", "main"],
    ):
        step = _run(argv, env, cwd=tmp_path / "work")
        assert step.returncode == 0, step.stderr
    log = subprocess.run(
        ["git", "-C", str(bare_git_repo), "log", "--format=%s", "main"], capture_output=True, text=True, check=True
    )
    assert log.stdout.splitlines()[0] == "through the firewall"
    secret = egress_upstream.world.github_secret
    assert any(s.path.startswith("/git/") and s.headers.get("Authorization") for s in egress_upstream.world.seen)
    assert_never_contains(
        [clone.stderr, step.stderr, *files_under(tmp_path / "work" / ".git"), *files_under(fw.state.root)], secret
    )


@pytest.mark.real
def test_node_undici_proxy_agent(
    egress_firewall: StartFirewall, egress_upstream: EgressUpstream, tmp_path: Path
) -> None:
    fw = egress_firewall()
    env = {
        **fw.client_env("devbot", tmp_path / "home"),
        "NODE_PATH": str(REPO_ROOT / "node_modules"),
        "PLACEHOLDER": GITHUB_PLACEHOLDER,
    }
    script = """
const { ProxyAgent, request } = require('undici');
(async () => {
  const dispatcher = new ProxyAgent(process.env.HTTPS_PROXY);
  const res = await request('https://api.github.test/leak', { dispatcher });
  const body = await res.body.text();
  const ok = await request('https://api.github.test/api/v3/user',
    { dispatcher, headers: { authorization: `token ${process.env.PLACEHOLDER}` } });
  console.log(JSON.stringify({ status: res.statusCode, leak: res.headers['x-leak'], body, user: await ok.body.json() }));
})().catch((e) => { console.error(String(e)); process.exit(1); });
"""
    result = _run([_need("node"), "-e", script], env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == 200
    assert out["leak"] == GITHUB_PLACEHOLDER
    assert json.loads(out["body"])["token"] == GITHUB_PLACEHOLDER
    assert out["user"]["login"] == "devbot"
    assert_never_contains([result.stdout, result.stderr], egress_upstream.world.github_secret)


@pytest.mark.real
def test_gh_cli(egress_firewall: StartFirewall, egress_upstream: EgressUpstream, tmp_path: Path) -> None:
    fw = egress_firewall()
    env = {
        **fw.client_env("devbot", tmp_path / "home"),
        "GH_HOST": "github.test",
        "GH_ENTERPRISE_TOKEN": GITHUB_PLACEHOLDER,
        "GH_PROMPT_DISABLED": "1",
        "GH_NO_UPDATE_NOTIFIER": "1",
        "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config"),
    }
    result = _run([_need("gh"), "api", "/user"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["login"] == "devbot"
    seen = [s for s in egress_upstream.world.seen if s.path == "/api/v3/user"]
    assert seen[-1].headers["Authorization"] == f"token {egress_upstream.world.github_secret}"
    assert_never_contains(
        [result.stdout, result.stderr, *files_under(tmp_path / "home")], egress_upstream.world.github_secret
    )


@pytest.mark.real
def test_the_claude_cli_uses_stub_oauth_credentials_and_never_sees_the_real_token(
    egress_firewall: StartFirewall,
    egress_upstream: EgressUpstream,
    model_server: StartModelServer,
    claude_binary: Path,
    tmp_path: Path,
) -> None:
    world = egress_upstream.world
    model = model_server({"agents": {"default": [{"text": "Hello through the firewall"}]}})
    world.model_url = model.url
    real = ClaudeTokens(
        world.claude_access, world.claude_refresh, int((time.time() + 3600) * 1000), ("user:inference",), "max"
    )
    fw = egress_firewall(claude_tokens=real)
    home = tmp_path / "claude-home"
    config = home / ".claude"
    config.mkdir(parents=True)
    # An expired stub: the CLI refreshes first, and the firewall must answer that with stubs.
    stub = {
        "claudeAiOauth": {
            "accessToken": STUB_ACCESS,
            "refreshToken": STUB_REFRESH,
            "expiresAt": int((time.time() - 60) * 1000),
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }
    }
    (config / ".credentials.json").write_text(json.dumps(stub))
    (config / ".credentials.json").chmod(0o600)
    (config / ".claude.json").write_text(json.dumps({"hasCompletedOnboarding": True, "theme": "dark"}))
    env = {
        **fw.client_env("devbot", home),
        "CLAUDE_CONFIG_DIR": str(config),
        "DISABLE_AUTOUPDATER": "1",
        "LANG": "C.UTF-8",
    }
    result = _run([str(claude_binary), "-p", "say hello"], env, cwd=tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr, fw.audit())
    assert "Hello through the firewall" in result.stdout
    audit = fw.audit()
    assert any(e["decision"] == "answered" and e["host"] == "platform.claude.com" for e in audit), audit
    turns = [s for s in world.seen if s.path.startswith("/v1/messages")]
    assert turns
    assert all(s.headers["Authorization"] == f"Bearer {world.claude_access}" for s in turns)
    saved = json.loads((config / ".credentials.json").read_text())["claudeAiOauth"]
    assert saved["accessToken"] == STUB_ACCESS
    assert saved["refreshToken"] == STUB_REFRESH
    assert saved["expiresAt"] > time.time() * 1000
    assert_never_contains(
        [
            result.stdout,
            result.stderr,
            *files_under(home),
            fw.state.audit_log_path.read_bytes(),
            *(str(d) for d in fw.denials),
            model.server.log_path.read_bytes(),
        ],
        world.claude_access,
        world.claude_refresh,
    )


@pytest.mark.real
def test_the_interactive_claude_cli_in_tmux_never_holds_the_real_token(
    egress_firewall: StartFirewall,
    egress_upstream: EgressUpstream,
    model_server: StartModelServer,
    claude_binary: Path,
    tmux_server: Tmux,
    leak_check: LeakCheck,
    tmp_path: Path,
) -> None:
    world = egress_upstream.world
    model = model_server({"agents": {"default": [{"text": "Hello through the firewall"}]}})
    world.model_url = model.url
    real = ClaudeTokens(
        world.claude_access, world.claude_refresh, int((time.time() + 3600) * 1000), ("user:inference",), "max"
    )
    fw = egress_firewall(claude_tokens=real)
    home, cwd = tmp_path / "agent-home", tmp_path / "agent-work"
    config = home / ".claude"
    config.mkdir(parents=True)
    cwd.mkdir()
    stub = {
        "claudeAiOauth": {
            "accessToken": STUB_ACCESS,
            "refreshToken": STUB_REFRESH,
            "expiresAt": int((time.time() + 7200) * 1000),
            "scopes": ["user:inference", "user:profile"],
            "subscriptionType": "max",
        }
    }
    write_atomic(config / ".credentials.json", json.dumps(stub), mode=0o600)
    seeded = seed_claude_json({}, version=PINNED_VERSION, trusted_dirs=[str(cwd)])
    write_atomic(config / ".claude.json", json.dumps(seeded), mode=0o600)
    client_env = fw.client_env("devbot", home)
    launch = claude_launch(
        claude_binary,
        cwd=cwd,
        home=home,
        config_dir=config,
        base_url="https://api.anthropic.com",
        running_as_root=os.geteuid() == 0,
        api_key=None,
        extra_env={k: v for k, v in client_env.items() if k not in ("PATH", "HOME", "TMPDIR")},
    )
    pane = start_in_tmux(tmux_server, "fw-claude", launch, ready_timeout=30, remain_on_exit=True)
    leak_check.track(pane.pane_pid, "claude behind the firewall")
    environ = Path(f"/proc/{pane.pane_pid}/environ").read_bytes()
    tmux_server.send_text("fw-claude", "say hello")
    tmux_server.wait_for("fw-claude", "Hello through the firewall", timeout=30, history=True)
    screen = tmux_server.capture("fw-claude", history=True)
    # Stopped before its files are read: a running CLI creates and removes files as it goes.
    tmux_server.kill_session("fw-claude")
    turns = [s for s in world.seen if s.path.startswith("/v1/messages")]
    assert turns
    assert all(s.headers["Authorization"] == f"Bearer {world.claude_access}" for s in turns)
    assert_never_contains(
        [screen, environ, *files_under(home), fw.state.audit_log_path.read_bytes(), model.server.log_path.read_bytes()],
        world.claude_access,
        world.claude_refresh,
    )
