"""The per-agent CA bundle, proven with real clients: a server whose certificate the firewall's CA
signed is trusted by curl, git, Python, Node and gh in the agent's environment — and not without it."""

from __future__ import annotations

import http.server
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from agent_smith.crew import CrewPaths, load_crew
from agent_smith.egress import FirewallState
from agent_smith.home import AssembleOptions, agent_environment, assemble
from tests.home.crewkit import git, git_env, make_remote, recording_command, write_crew

pytestmark = pytest.mark.real


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def agent(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """The assembled agent's environment (plus PATH) and a directory an HTTPS server can serve."""
    crew = write_crew(tmp_path / "crew", state_dir=tmp_path / "state")
    command, _ = recording_command(tmp_path / "bin")
    loaded = load_crew(crew, env={})
    assemble(loaded, "devbot", AssembleOptions(agent_smith_command=str(command), env={}, clone=False))
    env = agent_environment(loaded, "devbot")
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    return env, CrewPaths.of(loaded.crew).firewall


@pytest.fixture
def https_server(tmp_path: Path, agent: tuple[dict[str, str], Path]) -> Iterator[tuple[str, Path]]:
    _, firewall = agent
    cert_pem, key_pem = FirewallState(firewall).ca().issue(["127.0.0.1"])
    (tmp_path / "leaf.pem").write_bytes(cert_pem)
    (tmp_path / "leaf-key.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf-key.pem")
    root = tmp_path / "served"
    root.mkdir()
    (root / "hello.txt").write_text("hello through the firewall's CA\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_real_clients_trust_the_firewall_ca_through_the_agents_bundle(
    tmp_path: Path, agent: tuple[dict[str, str], Path], https_server: tuple[str, Path]
) -> None:
    env, _ = agent
    url, root = https_server
    expected = "hello through the firewall's CA\n"

    curl = _run(["curl", "-sS", f"{url}/hello.txt"], env)
    assert curl.stdout == expected, curl.stderr

    python = _run(
        [
            sys.executable,
            "-c",
            f"import urllib.request; print(urllib.request.urlopen('{url}/hello.txt').read().decode(), end='')",
        ],
        env,
    )
    assert python.stdout == expected, python.stderr

    node = _run(
        [
            "node",
            "-e",
            f"require('https').get('{url}/hello.txt', r => r.pipe(process.stdout)).on('error', e => {{ console.error(e.message); process.exit(1) }})",
        ],
        env,
    )
    assert node.stdout == expected, node.stderr

    (tmp_path / "githome").mkdir()
    bare = make_remote(root, "acme/widgets", git_env(tmp_path / "githome"))
    git(git_env(tmp_path / "githome"), "update-server-info", cwd=bare)
    remote = _run(["git", "ls-remote", f"{url}/acme/widgets.git"], env)
    assert remote.returncode == 0, remote.stderr
    assert "refs/heads/main" in remote.stdout

    # gh (Go) reads SSL_CERT_FILE: the TLS handshake succeeds and the stand-in-less server answers 404.
    host = url.removeprefix("https://")
    gh_env = {**env, "GH_HOST": host, "GH_ENTERPRISE_TOKEN": env["GITHUB_TOKEN"], "TMPDIR": str(tmp_path)}
    gh = _run(["gh", "api", "/hello.txt"], gh_env)
    assert "404" in gh.stderr, gh.stderr
    assert "x509" not in gh.stderr

    # Without the agent's bundle the same request is refused: the bundle is what makes it work.
    system_only = {**env, "CURL_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    refused = _run(["curl", "-sS", f"{url}/hello.txt"], system_only)
    assert refused.returncode != 0
    assert "certificate" in refused.stderr
    gh_refused = _run(["gh", "api", "/hello.txt"], {**gh_env, "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    assert "x509" in gh_refused.stderr or "certificate" in gh_refused.stderr, gh_refused.stderr


def test_npm_goes_through_the_agents_proxy(tmp_path: Path, agent: tuple[dict[str, str], Path]) -> None:
    env, _ = agent
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def accept() -> None:
        # Refuse like the firewall refuses a host it does not allow; npm then gives up at once.
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        proxy = f"http://devbot:pw@127.0.0.1:{listener.getsockname()[1]}"
        npm_env = {**env, "npm_config_https_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
        npm = _run(["npm", "view", "left-pad", "--registry=https://registry.npmjs.org/", "--fetch-retries=0"], npm_env)
        assert npm.returncode != 0
    finally:
        # shutdown wakes the blocked accept(); close alone does not on Linux.
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(10)
    assert seen, "npm did not use npm_config_https_proxy"
    request = seen[0].decode(errors="replace")
    assert request.startswith("CONNECT registry.npmjs.org:443 ")
    assert "proxy-authorization: basic " in request.lower()
