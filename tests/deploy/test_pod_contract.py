"""A rendered pod's init container, run for real: `agent-smith assemble` with only the image's and the pod's env.

The kubelet's work is done by hand: the crew ConfigMap is written out as its
volume items, Secret references are resolved, $(VAR)s expanded, and the
image's fixed paths (/var/lib/agent-smith, /etc/agent-smith/…) are moved
under tmp_path. Nothing else of this machine's environment reaches the
command.
"""

from __future__ import annotations

import base64
import json
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from tests.deploy.crews import (
    IMAGE,
    as_pod_user,
    example_crew,
    materialize_config,
    mover,
    resolve_env,
    runtime_mountpoints,
)
from tests.deploy.test_release import _image_env

from agent_smith.certs import mint_ca
from agent_smith.deploy import crew_files, render_crew
from agent_smith.deploy.render import CA_MOUNT, CREW_MOUNT, STATE_DIR
from agent_smith.listeners import free_port

AGENT_SMITH = str(Path(sys.executable).parent / "agent-smith")


def _pod(rendered: Any, agent: str) -> dict[str, Any]:
    sts = next(
        m
        for m in rendered.manifests
        if m["kind"] == "StatefulSet" and m["metadata"]["name"] == f"agent-smith-agent-{agent}"
    )
    pod: dict[str, Any] = sts["spec"]["template"]["spec"]
    return pod


def test_the_init_container_assembles_the_agent_from_the_pod_alone(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path)
    # A persona may keep files that are not text (an avatar, say): they reach the pod as they are.
    (loaded.root / "agents" / "devbot" / "avatar.png").write_bytes(IMAGE)
    rendered = render_crew(loaded.crew, crew_files(loaded))
    config = next(m for m in rendered.manifests if m["kind"] == "ConfigMap")
    pod = _pod(rendered, "devbot")
    root = tmp_path / "pod"
    moved = mover({STATE_DIR: str(root / "state"), CREW_MOUNT: str(root / "crew"), CA_MOUNT: str(root / "ca")})

    crew_volume = next(v for v in pod["volumes"] if v["name"] == "crew")
    materialize_config(config, crew_volume, root / "crew")
    (root / "ca").mkdir(parents=True)
    (root / "ca" / "ca.pem").write_bytes(mint_ca("test firewall CA").cert_pem)
    secrets = {(ref.name, key): f"test-secret-{ref.name}-{key}" for ref in rendered.external for key in ref.keys}
    init = next(c for c in pod["initContainers"] if c["name"] == "assemble")
    env = {key: moved(value) for key, value in {**_image_env(), **resolve_env(init["env"], secrets)}.items()}
    env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"

    result = subprocess.run(
        [AGENT_SMITH, *init["args"], "--no-clone"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr

    home = Path(env["HOME"])
    assert home == root / "state" / "example-crew" / "agents" / "devbot" / "home"
    settings = json.loads((home / ".claude" / "settings.json").read_text())
    agent_env = settings["env"]
    assert agent_env["NATS_URL"] == "nats://agent-smith-nats.agent-smith.svc:4222"
    assert agent_env["GITHUB_TOKEN"] == loaded.crew.forge.token_placeholder
    bundle = Path(agent_env["SSL_CERT_FILE"])
    assert bundle.is_relative_to(home)
    assert (root / "ca" / "ca.pem").read_text().strip() in bundle.read_text()
    assert "devbot" in (home / ".claude" / "CLAUDE.md").read_text()
    assert (root / "crew" / "agents" / "devbot" / "avatar.png").read_bytes() == IMAGE

    # The Matrix token is a real secret: it may reach only the mode-600 file the chat server reads.
    matrix_token = secrets[("agent-smith-matrix-devbot", "access_token")]
    assert matrix_token not in result.stdout + result.stderr
    assert matrix_token not in json.dumps(settings)
    assert matrix_token not in (home / ".claude.json").read_text()
    token_files = [
        f for f in (root / "state").rglob("*") if f.is_file() and matrix_token in f.read_text(errors="replace")
    ]
    assert [f.name for f in token_files] == ["matrix_access_token"]
    assert token_files[0].stat().st_mode & 0o077 == 0


def test_the_agent_pod_starts_in_volumes_mounted_as_a_container_runtime_mounts_them(tmp_path: Path) -> None:
    """The workspace volume is mounted inside the home volume: each container's runtime makes its
    missing parents as root. The init containers must still be able to assemble the agent there."""
    loaded = example_crew(tmp_path)
    rendered = render_crew(loaded.crew, crew_files(loaded))
    pod = _pod(rendered, "devbot")
    root = tmp_path / "pod"
    moved = mover({STATE_DIR: str(root / "state"), CREW_MOUNT: str(root / "crew"), CA_MOUNT: str(root / "ca")})

    def volume_place(mount_path: str) -> Path | None:
        # The state volumes are simulated; the crew and CA are written out below, /tmp is the host's.
        return Path(moved(mount_path)) if mount_path.startswith(STATE_DIR) else None

    materialize_config(
        next(m for m in rendered.manifests if m["kind"] == "ConfigMap"),
        next(v for v in pod["volumes"] if v["name"] == "crew"),
        root / "crew",
    )
    (root / "ca").mkdir(parents=True)
    (root / "ca" / "ca.pem").write_bytes(mint_ca("test firewall CA").cert_pem)
    (root / "state").mkdir()  # the home volume's root, the pod's by fsGroup
    secrets = {(ref.name, key): f"test-secret-{ref.name}-{key}" for ref in rendered.external for key in ref.keys}

    for init in pod["initContainers"]:
        runtime_mountpoints(init, volume_place)
        env = {
            key: moved(value) for key, value in {**_image_env(), **resolve_env(init.get("env", []), secrets)}.items()
        }
        env["PATH"] = f"{Path(sys.executable).parent}:/usr/bin:/bin"
        argv = [moved(word) for word in init["command"]] if "command" in init else [AGENT_SMITH, *init["args"]]
        if init["name"] == "assemble":
            argv.append("--no-clone")
        result = subprocess.run(as_pod_user(argv), env=env, capture_output=True, text=True, timeout=120, check=False)
        assert result.returncode == 0, f"{init['name']}: {result.stderr}"

    assert (root / "state" / "example-crew" / "agents" / "devbot" / "home" / ".claude" / "CLAUDE.md").is_file()
    # By the main container's start every directory of its mounts exists, and is the agent's own.
    assert runtime_mountpoints(pod["containers"][0], volume_place) == []


def _connect_status(port: int, user: str, password: str) -> bytes:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        sock.sendall(
            b"CONNECT blocked.example.invalid:443 HTTP/1.1\r\nHost: blocked.example.invalid:443\r\n"
            + f"Proxy-Authorization: Basic {auth}\r\n\r\n".encode()
        )
        return sock.recv(200).split(b"\r\n", 1)[0]


def test_the_firewall_pod_admits_exactly_the_agents_bootstrap_credentials(tmp_path: Path) -> None:
    """`k8s secrets` → Secrets → the firewall's init container and env; an agent pod's HTTPS_PROXY gets in."""
    loaded = example_crew(tmp_path)
    boot = tmp_path / "boot"
    made = subprocess.run(
        [
            AGENT_SMITH,
            "k8s",
            "secrets",
            "--crew",
            str(loaded.root),
            "-o",
            str(boot),
            "--state-dir",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    secrets: dict[tuple[str, str], bytes] = {}
    for doc in YAML(typ="safe", pure=True).load_all((boot / "bootstrap-secrets.yaml").read_text()):
        for key, value in doc["data"].items():
            secrets[(doc["metadata"]["name"], key)] = base64.b64decode(value)
    real_token = "real-github-token-" + "0" * 20
    secrets[("agent-smith-firewall-secrets", "github")] = real_token.encode()
    secrets[("agent-smith-matrix-devbot", "access_token")] = b"test-matrix-token"
    as_text = {ref: value.decode("latin-1") for ref, value in secrets.items()}

    rendered = render_crew(loaded.crew, crew_files(loaded))
    pod = next(m for m in rendered.manifests if m["kind"] == "Deployment")["spec"]["template"]["spec"]
    root = tmp_path / "firewall-pod"
    moved = mover(
        {STATE_DIR: str(root / "state"), CREW_MOUNT: str(root / "crew"), "/bootstrap": str(root / "bootstrap")}
    )

    volumes = {v["name"]: v for v in pod["volumes"]}
    materialize_config(next(m for m in rendered.manifests if m["kind"] == "ConfigMap"), volumes["crew"], root / "crew")
    (root / "bootstrap").mkdir()
    for source in volumes["bootstrap"]["projected"]["sources"]:
        for item in source["secret"]["items"]:
            (root / "bootstrap" / item["path"]).write_bytes(secrets[(source["secret"]["name"], item["key"])])
    init = pod["initContainers"][0]
    subprocess.run([*init["command"][:2], moved(init["command"][2])], check=True, timeout=30)
    state = root / "state" / "example-crew" / "firewall"
    assert (state / "identity.key").read_bytes() == secrets[("agent-smith-firewall-identity", "identity.key")]
    assert stat.S_IMODE((state / "identity.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((state / "ca-key.pem").stat().st_mode) == 0o600

    port = free_port()
    main = pod["containers"][0]
    env = {key: moved(value) for key, value in resolve_env(main["env"], as_text).items()}
    assert env["AGENT_SMITH_SECRET_GITHUB"] == real_token
    env |= {
        "AGENT_SMITH_EGRESS__LISTEN": f"127.0.0.1:{port}",  # the pod's 0.0.0.0, kept on loopback here
        "NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
    }
    log = root / "firewall.log"
    with log.open("w") as out:
        firewall = subprocess.Popen([AGENT_SMITH, *[moved(a) for a in main["args"]]], env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 60
            while True:
                assert firewall.poll() is None, log.read_text()
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, "the firewall did not listen within 60 s"
                    time.sleep(0.1)
            agent = _pod(rendered, "devbot")["containers"][0]
            proxy = urlsplit(resolve_env(agent["env"], as_text)["HTTPS_PROXY"])
            assert proxy.username == "devbot"
            assert proxy.password
            # Authenticated, then refused by the allowlist: 403. A wrong password: 407.
            assert _connect_status(port, "devbot", proxy.password) == b"HTTP/1.1 403 "
            assert _connect_status(port, "devbot", proxy.password[::-1]) == b"HTTP/1.1 407 "
            assert _connect_status(port, "reviewbot", proxy.password) == b"HTTP/1.1 407 "
        finally:
            firewall.terminate()
            try:
                firewall.wait(15)
            except subprocess.TimeoutExpired:
                firewall.kill()
                firewall.wait(5)
    written = log.read_text()
    for value in (real_token, proxy.password):
        assert value not in written
