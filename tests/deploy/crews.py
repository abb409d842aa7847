"""Generated crews for the deploy tests: every option the render branches on, in valid combinations."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from agent_smith.crew import Crew, LoadedCrew, load_crew, scaffold_crew
from agent_smith.deploy import crew_files
from agent_smith.deploy.render import AGENT_LABEL, CONFIG_HASH, FileContent

# crew.yaml replacements (old → new) for the scaffolded example: transparent mode, and devbot's own listener.
TRANSPARENT = {
    "  listen: 127.0.0.1:3128\n": "  listen: 127.0.0.1:3128\n  transparent_listen: 127.0.0.1:8443\n",
    "egress:\n": "kubernetes:\n  transparent_egress: true\n  firewall_cluster_ip: 10.96.0.53\negress:\n",
}
OWN_LISTENER = {
    "    role: developer\n": "    role: developer\n    kubernetes: {firewall_cluster_ip: 10.96.0.60, firewall_port: 9443}\n"
}

NAMES = st.from_regex(r"\A[a-z][a-z0-9]{1,8}\Z")
HOSTS = st.from_regex(r"\A[a-z]{2,8}\.(com|dev|io)\Z")
CPU = st.sampled_from(["100m", "250m", "500m", "1", "2"])
MEMORY = st.sampled_from(["128Mi", "512Mi", "1Gi", "2Gi", "4Gi"])


def _ordered(small: str, large: str, parse: dict[str, float]) -> tuple[str, str]:
    return (small, large) if parse[small] <= parse[large] else (large, small)


_CPU_VALUES = {"100m": 0.1, "250m": 0.25, "500m": 0.5, "1": 1, "2": 2}
_MEM_VALUES = {"128Mi": 128, "512Mi": 512, "1Gi": 1024, "2Gi": 2048, "4Gi": 4096}


@st.composite
def resources(draw: st.DrawFn) -> dict[str, str]:
    cpu = _ordered(draw(CPU), draw(CPU), _CPU_VALUES)
    memory = _ordered(draw(MEMORY), draw(MEMORY), _MEM_VALUES)
    return {
        "cpu_request": cpu[0],
        "cpu_limit": cpu[1],
        "memory_request": memory[0],
        "memory_limit": memory[1],
        "home_storage": draw(st.sampled_from(["1Gi", "5Gi"])),
        "workspace_storage": draw(st.sampled_from(["10Gi", "20Gi"])),
    }


@st.composite
def crews(draw: st.DrawFn, max_agents: int = 4) -> dict[str, Any]:
    """crew.yaml data (valid by construction) covering matrix, NATS, transparent and secret options."""
    names = draw(st.lists(NAMES, min_size=1, max_size=max_agents, unique=True))
    with_matrix = draw(st.booleans())
    agents = []
    for name in names:
        agent: dict[str, Any] = {"name": name, "repos": [f"acme/{name}"], "resources": draw(resources())}
        if with_matrix and draw(st.booleans()):
            agent["matrix"] = {"user_id": f"@{name}:example.org", "rooms": ["#crew:example.org"]}
        if draw(st.booleans()):
            agent["egress"] = {"allow": [{"host": draw(HOSTS), "ports": [443, draw(st.sampled_from([8443, 22]))]}]}
        if draw(st.booleans()):
            agent["env"] = {"EDITOR": "vi", "LANG": "C.UTF-8"}
        agents.append(agent)
    data: dict[str, Any] = {"crew": {"name": draw(NAMES)}, "agents": agents}
    homeserver = None
    if with_matrix:
        homeserver = draw(
            st.sampled_from(["http://synapse.matrix.svc:8008", "https://matrix.example.org", "http://synapse:8008"])
        )
        data["matrix"] = {"homeserver": homeserver}
    secrets = []
    for i, source in enumerate(draw(st.lists(st.sampled_from(["env", "file"]), max_size=3))):
        value = {"env": f"REAL_SECRET_{i}"} if source == "env" else {"file": f"/run/secrets/s{i}"}
        secrets.append(
            {
                "name": f"secret-{i}",
                "placeholder": f"agent-smith-placeholder-{i}",
                "source": value,
                "hosts": [draw(HOSTS), "*.example.com"],
            }
        )
    transparent = draw(st.booleans())
    data["egress"] = {
        "listen": f"127.0.0.1:{draw(st.sampled_from([3128, 8080]))}",
        "allow": [{"host": "api.github.com"}, {"host": "*.githubusercontent.com"}],
        "secrets": secrets,
        "claude_login": {"enabled": draw(st.booleans())},
    }
    if draw(st.booleans()):
        data["egress"]["allow"].append({"host": "internal.example.com", "allow_private": True})
    kubernetes: dict[str, Any] = {
        "external_secrets": draw(st.booleans()),
        "agent_role": draw(st.booleans()),
        "agent_role_access": draw(st.sampled_from(["read-only", "read-write"])),
    }
    if transparent:
        data["egress"]["transparent_listen"] = "127.0.0.1:8443"
        kubernetes |= {"transparent_egress": True, "firewall_cluster_ip": "10.96.0.53"}
        # Some agents get a firewall Service and listener of their own, the others share the crew's.
        ports = draw(st.lists(st.integers(9000, 9999), min_size=len(agents), max_size=len(agents), unique=True))
        for i, (agent, port) in enumerate(zip(agents, ports, strict=True)):
            if draw(st.booleans()):
                agent["kubernetes"] = {"firewall_cluster_ip": f"10.96.1.{i + 1}", "firewall_port": port}
    if draw(st.booleans()):
        kubernetes["storage_class"] = "fast-ssd"
    # A peer's pods may listen on another port than the URL's (a Service maps it): then it says which.
    pod_port = st.sampled_from([{}, {"port": 8008}, {"port": 6443}])
    if draw(st.booleans()):
        kubernetes["api_server"] = {"cidr": "10.0.0.1/32", **draw(pod_port)}
    if homeserver == "https://matrix.example.org":
        # Outside the cluster: the agents reach it by address (the render refuses otherwise).
        kubernetes["matrix_peer"] = {"cidr": "203.0.113.10/32", **draw(pod_port)}
    if draw(st.booleans()):
        # OpenShift's DNS: its own namespace, its own labels, port 5353.
        dns = {"namespace": "openshift-dns", "pod_labels": {"dns.operator.openshift.io/daemonset-dns": "default"}}
        kubernetes["dns_peer"] = {**dns, **draw(st.sampled_from([{}, {"port": 5353}]))}
    nats = draw(st.sampled_from(["embedded", "in-cluster", "external"]))
    if nats == "in-cluster":
        data["events"] = {"nats_url": "nats://nats.events.svc:4222"}
    elif nats == "external":
        data["events"] = {"nats_url": "tls://nats.example.net:4443"}
        kubernetes["nats_peer"] = {"cidr": "198.51.100.7/32", **draw(pod_port)}
    data["kubernetes"] = kubernetes
    return data


def files_for(crew: Crew) -> dict[str, str]:
    files = {
        "crew.yaml": "version: 1\n",
        "agents/_shared/CLAUDE.md": "# shared\n",
        "agents/_shared/settings.json": "{}\n",
    }
    for agent in crew.agents:
        files[f"agents/{agent.name}/CLAUDE.md"] = f"# {agent.name}\n"
        files[f"agents/{agent.name}/subagents/helper.md"] = "---\nname: helper\ndescription: helps\n---\n"
    return files


def secret_env_of(crew: Crew) -> set[str]:
    return {rule.source.env for rule in crew.egress.secrets if rule.source.env is not None}


def example_crew(tmp_path: Path, replace: dict[str, str] | None = None) -> LoadedCrew:
    """The scaffolded example crew, with crew.yaml text replacements (old → new) applied."""
    directory = tmp_path / "crew"
    scaffold_crew(directory)
    crew_yaml = directory / "crew.yaml"
    text = crew_yaml.read_text()
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    crew_yaml.write_text(text)
    return load_crew(directory, env={})


def edited_example(
    directory: Path, replace: dict[str, str], files: dict[str, str | bytes]
) -> tuple[Crew, dict[str, FileContent]]:
    """The example crew with crew.yaml text replaced and persona files set, as `k8s render` reads it."""
    loaded = example_crew(directory, replace)
    for path, content in files.items():
        target = loaded.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content if isinstance(content, bytes) else content.encode())
    reloaded = load_crew(loaded.root, env={})
    return reloaded.crew, crew_files(reloaded)


def example(tmp_path: Path) -> tuple[LoadedCrew, dict[str, str]]:
    loaded = example_crew(tmp_path)
    return loaded, crew_files(loaded)


def resolve_env(env: list[dict[str, Any]], secrets: dict[tuple[str, str], str]) -> dict[str, str]:
    """A container's environment as the kubelet builds it: secretKeyRefs read, $(VAR) expanded in order.

    As the kubelet's expansion does: `$$` is a literal `$`, `$(NAME)` the value of a variable
    defined earlier in the list, and left as written when there is none.
    """
    out: dict[str, str] = {}
    for var in env:
        if "valueFrom" in var:
            ref = var["valueFrom"]["secretKeyRef"]
            out[var["name"]] = secrets[(ref["name"], ref["key"])]
        else:
            out[var["name"]] = re.sub(
                r"\$\$|\$\(([^)]*)\)", lambda m: "$" if m[0] == "$$" else out.get(m[1], m[0]), var["value"]
            )
    return out


def materialize_config(config: dict[str, Any], volume: dict[str, Any], directory: Path) -> None:
    """Write a ConfigMap volume's items as the kubelet would mount them: `data` as UTF-8, `binaryData` decoded."""
    for item in volume["configMap"]["items"]:
        path = directory / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        if item["key"] in config.get("binaryData", {}):
            path.write_bytes(base64.b64decode(config["binaryData"][item["key"]], validate=True))
        else:
            path.write_bytes(config["data"][item["key"]].encode())


# What an agent's pod reads: one rollout hash per agent, read from its StatefulSet.
def rollout_hashes(manifests: Any) -> dict[str, str]:
    return {
        obj["metadata"]["labels"][AGENT_LABEL]: obj["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH]
        for obj in manifests
        if obj["kind"] == "StatefulSet" and AGENT_LABEL in obj["metadata"]["labels"]
    }


# A PNG's first bytes: no UTF-8 (0x89 starts no character).
IMAGE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe"

# Edits of the example crew (crew.yaml replacements, persona files set) and the agents each must restart:
# exactly those whose pods read what changed.
ROLLOUT_EDITS: list[tuple[str, dict[str, str], dict[str, str | bytes], set[str]]] = [
    ("devbot's CLAUDE.md", {}, {"agents/devbot/CLAUDE.md": "# devbot, renamed\n"}, {"devbot"}),
    ("a subagent of reviewbot", {}, {"agents/reviewbot/subagents/security-reviewer.md": "---\n---\n"}, {"reviewbot"}),
    ("a new file of devbot", {}, {"agents/devbot/notes/style.md": "tabs\n"}, {"devbot"}),
    ("an image of reviewbot", {}, {"agents/reviewbot/avatar.png": IMAGE}, {"reviewbot"}),
    ("the shared CLAUDE.md", {}, {"agents/_shared/CLAUDE.md": "# everyone\n"}, {"devbot", "reviewbot"}),
    ("the shared settings", {}, {"agents/_shared/settings.json": "{}\n"}, {"devbot", "reviewbot"}),
    ("devbot's entry", {"      room, and wait for work.": "      room."}, {}, {"devbot"}),
    (
        "reviewbot's repos",
        {"    role: reviewer\n    repos: [example/widgets]": "    role: reviewer\n    repos: [example/gadgets]"},
        {},
        {"reviewbot"},
    ),
    (
        "reviewbot's env",
        {"    role: reviewer\n": "    role: reviewer\n    env: {LANG: C.UTF-8}\n"},
        {},
        {"reviewbot"},
    ),
    # What devbot's team section, hook context and chat roster say of reviewbot.
    ("reviewbot's role", {"role: reviewer": "role: security reviewer"}, {}, {"devbot", "reviewbot"}),
    ("reviewbot's login", {"github_login: reviewbot": "github_login: reviewbot-gh"}, {}, {"devbot", "reviewbot"}),
    (
        "reviewbot's Matrix name",
        {"      display_name: reviewbot": "      display_name: Reviewer"},
        {},
        {"devbot", "reviewbot"},
    ),
    # Crew-level settings reach every agent.
    (
        "the operators",
        {'operators: ["@operator:localhost"]': 'operators: ["@boss:localhost"]'},
        {},
        {"devbot", "reviewbot"},
    ),
    ("the event log", {"max_age: 30d": "max_age: 7d"}, {}, {"devbot", "reviewbot"}),
    (
        "the allowlist",
        {"    - host: pypi.org\n": "    - host: pypi.org\n    - host: crates.io\n"},
        {},
        {"devbot", "reviewbot"},
    ),
    ("a comment in crew.yaml", {"# The crew: who": "# Our crew: who"}, {}, set()),
]


def clean_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root")}


def runtime_mountpoints(container: dict[str, Any], where: Callable[[str], Path | None]) -> list[Path]:
    """Make `container`'s missing mount destinations as a container runtime does; return the directories made.

    runc and crun make a missing destination with MkdirAll, as root, mode 0755, inside
    whatever volume holds it (kubernetes/kubernetes#81676): to the pod's non-root user
    those directories are read-only. Here they are made read-only (0555), and
    `as_pod_user` runs the container's process without the right to override that. The
    destination itself is where the volume is mounted: its own root, which fsGroup makes
    the pod's. `where` maps a mount path to its place here (None: not simulated).
    """
    made: list[Path] = []
    for mount in sorted(container.get("volumeMounts", []), key=lambda m: str(m["mountPath"]).count("/")):
        target = where(mount["mountPath"])
        if target is None or target.exists():
            continue
        missing = [target, *[p for p in target.parents if not p.exists()]]
        for directory in reversed(missing):
            directory.mkdir()
            directory.chmod(0o775 if directory == target else 0o555)
            made.append(directory)
    return made


def as_pod_user(argv: list[str]) -> list[str]:
    """`argv` run as the pod's non-root user is: held to file modes. Root here keeps its uid but no capability."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--bounding-set", "-all", "--inh-caps", "-all", "--", *argv]


def mover(moves: dict[str, str]) -> Callable[[str], str]:
    """A pod path (or a value holding some) as it is on this machine: each prefix in `moves` replaced."""

    def moved(value: str) -> str:
        for old, new in moves.items():
            value = value.replace(old, new)
        return value

    return moved
