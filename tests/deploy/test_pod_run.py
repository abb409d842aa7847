"""The agent container's main process, `agent-smith run`, started with a rendered pod's environment.

The kubelet's part is done by hand as in test_pod_contract: the crew
ConfigMap written out, Secret references resolved, the image's fixed paths
moved under tmp_path. The model provider is the scripted model server on
loopback (the agent's ANTHROPIC_BASE_URL), reached directly: the one
argument added to the pod's is ``--no-proxy 127.0.0.1``, since the firewall
that would carry that traffic in the cluster is not running here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from tests.deploy.crews import materialize_config, mover, resolve_env
from tests.deploy.test_release import _image_env
from tests.fixtures.model import StartModelServer

from agent_smith.certs import mint_ca
from agent_smith.crew import Crew
from agent_smith.deploy import render_crew
from agent_smith.deploy.render import CA_MOUNT, CREW_MOUNT, STATE_DIR
from agent_smith.listeners import free_port
from agent_smith.runtime import Tmux

AGENT_SMITH = str(Path(sys.executable).parent / "agent-smith")
NODE_BIN = Path(__file__).resolve().parents[2] / "node_modules" / ".bin"
FIRST_RUN = "Say hello to the crew, once."
STUB = (
    '{"claudeAiOauth": {"accessToken": "agent-smith-placeholder-claude-access-token", '
    '"refreshToken": "agent-smith-placeholder-claude-refresh-token", "expiresAt": 4102444800000, '
    '"scopes": ["user:inference", "user:profile"], "subscriptionType": "max"}}'
)


def test_run_with_a_rendered_pod_s_environment_supervises_the_agent(
    model_server: StartModelServer, tmp_path: Path
) -> None:
    server = model_server({"agents": {"solo": [{"when": {"contains": FIRST_RUN}, "text": "Solo here."}]}})
    socket_name = f"agent-smith-pod-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    crew = Crew.model_validate(
        {
            "crew": {"name": "pod"},
            "agents": [
                {
                    "name": "solo",
                    "first_run_prompt": FIRST_RUN,
                    "env": {"ANTHROPIC_BASE_URL": server.agent_url("solo")},
                }
            ],
            "runtime": {"tmux_socket": socket_name},
        }
    )
    files = {
        "crew.yaml": crew.model_dump_json(by_alias=True, exclude_none=True, exclude={"schema_ref"}),
        "agents/_shared/CLAUDE.md": "# Shared rules\n",
        "agents/_shared/settings.json": "{}\n",
        "agents/_shared/.credentials.json": STUB,
        "agents/solo/CLAUDE.md": "# solo\n",
    }
    rendered = render_crew(crew, files)
    config = next(m for m in rendered.manifests if m["kind"] == "ConfigMap")
    pod = next(
        m
        for m in rendered.manifests
        if m["metadata"]["name"] == "agent-smith-agent-solo" and m["kind"] == "StatefulSet"
    )
    spec = pod["spec"]["template"]["spec"]
    root = tmp_path / "pod"
    moved = mover({STATE_DIR: str(root / "state"), CREW_MOUNT: str(root / "crew"), CA_MOUNT: str(root / "ca")})

    materialize_config(config, next(v for v in spec["volumes"] if v["name"] == "crew"), root / "crew")
    (root / "ca").mkdir(parents=True)
    (root / "ca" / "ca.pem").write_bytes(mint_ca("test firewall CA").cert_pem)
    secrets = {(ref.name, key): f"test-{ref.name}-{key}" for ref in rendered.external for key in ref.keys}
    main = spec["containers"][0]
    assert {"name": "AGENT_SMITH_RUNTIME__METRICS_LISTEN", "value": "0.0.0.0:9464"} in main["env"]
    probe_port = free_port()
    env = {key: moved(value) for key, value in {**_image_env(), **resolve_env(main["env"], secrets)}.items()}
    env |= {
        "PATH": f"{Path(sys.executable).parent}:{NODE_BIN}:/usr/bin:/bin",
        # The probes' port, on loopback here instead of the pod's 0.0.0.0.
        "AGENT_SMITH_RUNTIME__METRICS_LISTEN": f"127.0.0.1:{probe_port}",
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmp_path),
    }

    init = next(c for c in spec["initContainers"] if c["name"] == "assemble")
    assembled = subprocess.run(
        [AGENT_SMITH, *init["args"]], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert assembled.returncode == 0, assembled.stderr

    tmux = Tmux(socket_name)
    process = subprocess.Popen(
        [AGENT_SMITH, *main["args"], "--no-proxy", "127.0.0.1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Solo here." in line:
                break
        out = "".join(lines)
        assert "[solo:claude]" in out, out[-3000:]
        assert "Solo here." in out, out[-3000:]
        assert tmux.list_sessions() == ["main"]
        probe = main["livenessProbe"]["httpGet"]["path"]
        with urllib.request.urlopen(f"http://127.0.0.1:{probe_port}{probe}", timeout=5) as response:
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        assert tmux.server_pid() is None
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if tmux.server_pid() is not None:
            tmux.command("kill-server")
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
