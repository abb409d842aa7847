"""The render: a pure function from the crew to manifests, held to schema and semantic promises."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from ruamel.yaml import YAML
from tests.deploy.crews import (
    IMAGE,
    OWN_LISTENER,
    ROLLOUT_EDITS,
    TRANSPARENT,
    crews,
    edited_example,
    example,
    example_crew,
    files_for,
    materialize_config,
    resolve_env,
    rollout_hashes,
    secret_env_of,
)
from tests.deploy.netpol import allows, pod_labels

from agent_smith.chat.config import chat_config
from agent_smith.crew import Crew, load_crew
from agent_smith.deploy import VERSIONS, check_manifests, crew_files, render_crew, validate_strict
from agent_smith.deploy.render import (
    CA_FILE,
    CONFIG_HASH,
    CONFIGMAP_LIMIT,
    CREW_MOUNT,
    FIREWALL,
    FIREWALL_SECRETS,
    NATS,
    agent_firewall_name,
    configmap_size,
    in_cluster_namespace,
    parse_quantity,
    url_endpoint,
)
from agent_smith.deploy.writer import to_yaml_stream
from agent_smith.errors import CrewError, UsageError
from agent_smith.home import plan


def by(manifests: Any, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == kind and (name is None or m["metadata"]["name"] == name)]


def one(manifests: Any, kind: str, name: str) -> dict[str, Any]:
    found = by(manifests, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


# ---- the example crew, end to end ---------------------------------------------------------


def test_the_example_crew_renders_valid_for_every_kubernetes_version(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    rendered = render_crew(loaded.crew, files)
    assert validate_strict(rendered.manifests, VERSIONS) == []
    assert check_manifests(rendered.manifests, rendered.external, secret_env=secret_env_of(loaded.crew)) == []
    kinds = {(m["kind"], m["metadata"]["name"]) for m in rendered.manifests}
    for agent in ("devbot", "reviewbot"):
        for kind in ("StatefulSet", "ServiceAccount", "NetworkPolicy", "Service"):
            assert (kind, f"agent-smith-agent-{agent}") in kinds
    for kind in ("Deployment", "Service", "NetworkPolicy", "ServiceAccount", "PersistentVolumeClaim"):
        assert any(k == kind and n.startswith(FIREWALL) for k, n in kinds)
    assert ("StatefulSet", "agent-smith-nats") in kinds
    assert {m["metadata"]["namespace"] for m in rendered.manifests} == {"agent-smith"}


def test_the_namespace_option_wins_over_the_crew(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    rendered = render_crew(loaded.crew, files, namespace="team-a")
    assert {m["metadata"]["namespace"] for m in rendered.manifests} == {"team-a"}
    env = one(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    values = {e["name"]: e.get("value") for e in env["containers"][0]["env"]}
    assert "agent-smith-firewall.team-a.svc" in values["HTTPS_PROXY"]
    assert values["NATS_URL"] == "nats://agent-smith-nats.team-a.svc:4222"


def test_the_render_is_deterministic(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    first = render_crew(loaded.crew, files)
    text = to_yaml_stream(first.manifests)
    assert to_yaml_stream(render_crew(loaded.crew, files).manifests) == text
    assert "&id" not in text, "shared objects leaked into the YAML as anchors"


def test_an_agent_pod_has_the_promised_shape(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    sts = one(render_crew(loaded.crew, files).manifests, "StatefulSet", "agent-smith-agent-devbot")
    pod = sts["spec"]["template"]["spec"]
    assert sts["spec"]["replicas"] == 1
    assert [c["name"] for c in pod["initContainers"]] == ["make-dirs", "assemble"]
    assert pod["initContainers"][1]["args"] == ["assemble", "devbot"]
    assert [c["args"] for c in pod["containers"]] == [["run"]]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    main = pod["containers"][0]
    assert main["securityContext"]["readOnlyRootFilesystem"] is True
    assert main["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    claims = {
        t["metadata"]["name"]: t["spec"]["resources"]["requests"]["storage"]
        for t in sts["spec"]["volumeClaimTemplates"]
    }
    assert claims == {"home": "5Gi", "workspace": "20Gi"}
    env = {e["name"]: e for e in main["env"]}
    assert env["AGENT_SMITH_CA_CERT"]["value"] == CA_FILE
    assert env["MATRIX_ACCESS_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "agent-smith-matrix-devbot",
        "key": "access_token",
    }
    assert env["AGENT_SMITH_PROXY_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "agent-smith-proxy-devbot"
    names = [e["name"] for e in main["env"]]
    # The kubelet expands $(VAR) only from variables defined earlier in the list.
    assert names.index("AGENT_SMITH_PROXY_PASSWORD") < names.index("HTTPS_PROXY")
    assert names.index("AGENT_NAME") < names.index("HTTPS_PROXY")
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts[CREW_MOUNT]["readOnly"] is True
    ca_volume = next(v for v in pod["volumes"] if v["name"] == "firewall-ca")
    assert ca_volume["secret"]["items"] == [{"key": "tls.crt", "path": "ca.pem"}]


def test_agents_may_reach_only_the_firewall_nats_matrix_and_dns(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {"homeserver: http://127.0.0.1:8008": "homeserver: http://synapse.chat.svc:8008"})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    policy = one(rendered.manifests, "NetworkPolicy", "agent-smith-agent-devbot")["spec"]
    assert policy["ingress"] == []
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    destinations = []
    for rule in policy["egress"]:
        for peer in rule["to"]:
            assert "ipBlock" not in peer, "an agent may not reach arbitrary addresses"
            destinations.append((json.dumps(peer, sort_keys=True), tuple(p["port"] for p in rule["ports"])))
    labels = dict(destinations)
    firewall = json.dumps(
        {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "agent-smith",
                    "app.kubernetes.io/instance": "example-crew",
                    "app.kubernetes.io/component": "firewall",
                }
            }
        },
        sort_keys=True,
    )
    assert labels[firewall] == (3128,)
    chat = json.dumps({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "chat"}}}, sort_keys=True)
    assert labels[chat] == (8008,)
    assert len(destinations) == 4  # firewall, DNS, NATS, Matrix


@pytest.mark.parametrize(
    ("nats_url", "namespaces", "ports"),
    [
        # A cluster's servers, the second without a scheme (the client reads nats:// then).
        ("nats://nats-0.events.svc:4222, nats-1.queues.svc:4223", ["events", "queues"], [4222, 4223]),
        ("nats.events.svc:4222", ["events"], [4222]),
        ("wss://nats.events.svc, tls://nats.events.svc", ["events"], [443, 4222]),
    ],
)
def test_agents_may_reach_every_nats_server_of_the_url(
    tmp_path: Path, nats_url: str, namespaces: list[str], ports: list[int]
) -> None:
    # A list rendered as one URL: "invalid port"; a server without a scheme: no host.
    loaded = example_crew(tmp_path, {"  # nats_url: nats://nats.example:4222": f"  nats_url: {nats_url!r}"})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    policy = one(rendered.manifests, "NetworkPolicy", "agent-smith-agent-devbot")["spec"]
    [rule] = [r for r in policy["egress"] if r["ports"][0]["port"] == ports[0]]
    assert rule["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}} for namespace in namespaces
    ]
    assert rule["ports"] == [{"protocol": "TCP", "port": port} for port in ports]


def test_the_firewall_gets_real_secrets_only_through_secret_refs(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    rendered = render_crew(loaded.crew, files)
    firewall = one(rendered.manifests, "Deployment", FIREWALL)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in firewall["env"]}
    assert env["AGENT_SMITH_SECRET_GITHUB"] == {
        "name": "AGENT_SMITH_SECRET_GITHUB",
        "valueFrom": {"secretKeyRef": {"name": FIREWALL_SECRETS, "key": "github"}},
    }
    assert env["AGENT_SMITH_EGRESS__LISTEN"]["value"] == "0.0.0.0:3128"
    assert [r.name for r in rendered.external if r.name == FIREWALL_SECRETS] == [FIREWALL_SECRETS]
    assert not by(rendered.manifests, "Secret")


def test_external_secrets_render_an_external_secret_instead(tmp_path: Path) -> None:
    loaded = example_crew(
        tmp_path, {"egress:\n": "kubernetes:\n  external_secrets: true\n  secret_store: vault\negress:\n"}
    )
    rendered = render_crew(loaded.crew, crew_files(loaded))
    [external] = by(rendered.manifests, "ExternalSecret")
    assert external["spec"]["secretStoreRef"] == {"kind": "ClusterSecretStore", "name": "vault"}
    assert external["spec"]["target"]["name"] == FIREWALL_SECRETS
    assert [d["secretKey"] for d in external["spec"]["data"]] == ["github"]
    assert FIREWALL_SECRETS not in {r.name for r in rendered.external}
    assert check_manifests(rendered.manifests, rendered.external) == []


def test_transparent_mode_points_allowlisted_names_at_the_firewall(tmp_path: Path) -> None:
    loaded = example_crew(
        tmp_path,
        {
            "  listen: 127.0.0.1:3128\n": "  listen: 127.0.0.1:3128\n  transparent_listen: 127.0.0.1:8443\n",
            "egress:\n": "kubernetes:\n  transparent_egress: true\n  firewall_cluster_ip: 10.96.0.53\negress:\n",
        },
    )
    rendered = render_crew(loaded.crew, crew_files(loaded))
    service = one(rendered.manifests, "Service", FIREWALL)["spec"]
    assert service["clusterIP"] == "10.96.0.53"
    assert {"name": "https", "port": 443, "targetPort": "transparent", "protocol": "TCP"} in service["ports"]
    pod = one(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    [alias] = pod["hostAliases"]
    assert alias["ip"] == "10.96.0.53"
    assert "api.github.com" in alias["hostnames"]
    assert "api.anthropic.com" in alias["hostnames"]
    assert not any(h.startswith("*") for h in alias["hostnames"])
    assert any("*.githubusercontent.com" in w for w in rendered.warnings)
    assert validate_strict(rendered.manifests) == []


def test_transparent_mode_aliases_host_names_as_the_api_server_accepts_them(tmp_path: Path) -> None:
    # Host names are case-insensitive and crew.yaml takes any case; hostAliases takes lower case only.
    loaded = example_crew(
        tmp_path,
        {**TRANSPARENT, "    - host: pypi.org\n": "    - host: PyPI.org\n    - host: a..b.example\n"},
    )
    rendered = render_crew(loaded.crew, crew_files(loaded))
    assert check_manifests(rendered.manifests, rendered.external, secret_env=secret_env_of(loaded.crew)) == []
    pod = one(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    [alias] = pod["hostAliases"]
    assert "pypi.org" in alias["hostnames"]
    assert "a..b.example" not in alias["hostnames"]
    assert any("a..b.example" in w and "cannot alias" in w for w in rendered.warnings)


def test_an_agent_with_its_own_listener_gets_its_own_service_port_and_aliases(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {**TRANSPARENT, **OWN_LISTENER})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    manifests = rendered.manifests
    service = one(manifests, "Service", agent_firewall_name("devbot"))
    assert service["metadata"]["name"] == "agent-smith-firewall-devbot"
    assert service["spec"]["clusterIP"] == "10.96.0.60"
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "agent-9443", "protocol": "TCP"}]
    assert service["spec"]["selector"] == one(manifests, "Service", FIREWALL)["spec"]["selector"]
    # reviewbot has no block: it keeps the shared listener, as before.
    assert by(manifests, "Service", agent_firewall_name("reviewbot")) == []
    firewall = one(manifests, "Deployment", FIREWALL)
    [container] = firewall["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named == {"proxy": 3128, "transparent": 8443, "agent-9443": 9443}
    aliases = {
        agent: one(manifests, "StatefulSet", f"agent-smith-agent-{agent}")["spec"]["template"]["spec"]["hostAliases"]
        for agent in ("devbot", "reviewbot")
    }
    assert [a["ip"] for a in aliases["devbot"]] == ["10.96.0.60"]
    assert [a["ip"] for a in aliases["reviewbot"]] == ["10.96.0.53"]
    assert "api.github.com" in aliases["devbot"][0]["hostnames"]
    assert validate_strict(manifests, VERSIONS) == []
    assert check_manifests(manifests, rendered.external) == []


def test_only_its_own_agent_may_reach_an_agent_s_listener(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {**TRANSPARENT, **OWN_LISTENER})
    manifests = render_crew(loaded.crew, crew_files(loaded)).manifests
    firewall = pod_labels(manifests, "Deployment", FIREWALL)
    devbot = pod_labels(manifests, "StatefulSet", "agent-smith-agent-devbot")
    reviewbot = pod_labels(manifests, "StatefulSet", "agent-smith-agent-reviewbot")
    nats = pod_labels(manifests, "StatefulSet", "agent-smith-nats")
    assert allows(manifests, devbot, firewall, 9443)
    assert not allows(manifests, reviewbot, firewall, 9443)
    assert not allows(manifests, nats, firewall, 9443)
    # The proxy and the shared transparent listener stay open to every agent.
    for agent in (devbot, reviewbot):
        assert allows(manifests, agent, firewall, 3128)
        assert allows(manifests, agent, firewall, 8443)
    # The firewall's own ingress is what keeps reviewbot out, not only reviewbot's egress policy:
    # a pod labelled as reviewbot with an open egress policy of its own would still be refused.
    open_egress = [m for m in manifests if m["metadata"]["name"] != "agent-smith-agent-reviewbot"]
    assert not allows(open_egress, reviewbot, firewall, 9443)
    assert allows(open_egress, reviewbot, firewall, 3128)


def test_an_own_listener_is_rendered_only_in_transparent_mode(tmp_path: Path) -> None:
    listen = "  listen: 127.0.0.1:3128\n"
    loaded = example_crew(tmp_path, {listen: listen + "  transparent_listen: 127.0.0.1:8443\n", **OWN_LISTENER})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    assert by(rendered.manifests, "Service", agent_firewall_name("devbot")) == []
    assert any("kubernetes.transparent_egress is off" in w for w in rendered.warnings)
    firewall = pod_labels(rendered.manifests, "Deployment", FIREWALL)
    devbot = pod_labels(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")
    assert not allows(rendered.manifests, devbot, firewall, 9443)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"agents": [{"firewall_port": 9443}, {"firewall_port": 9443}]},
            "crew.yaml: agents[1].kubernetes.firewall_port: port 9443 is already used at agents[0].kubernetes.firewall_port",
        ),
        (
            {"agents": [{"firewall_port": 8443}, {}]},
            "agents[0].kubernetes.firewall_port: port 8443 is already used at egress.transparent_listen",
        ),
        (
            {"agents": [{"firewall_cluster_ip": "10.96.0.53"}, {}]},
            "agents[0].kubernetes.firewall_cluster_ip: cluster IP 10.96.0.53 is already used at "
            "kubernetes.firewall_cluster_ip",
        ),
    ],
)
def test_the_render_refuses_listeners_that_are_not_one_agent_s(change: dict[str, Any], message: str) -> None:
    data = {
        "crew": {"name": "cc"},
        "agents": [
            {"name": "alice", "kubernetes": {"firewall_cluster_ip": "10.96.0.61", "firewall_port": 9001}},
            {"name": "bob", "kubernetes": {"firewall_cluster_ip": "10.96.0.62", "firewall_port": 9002}},
        ],
        "egress": {"transparent_listen": "0.0.0.0:8443"},
        "kubernetes": {"transparent_egress": True, "firewall_cluster_ip": "10.96.0.53"},
    }
    for agent, edit in zip(data["agents"], change["agents"], strict=True):
        agent["kubernetes"].update(edit)
    crew = Crew.model_validate(data)
    with pytest.raises(UsageError) as caught:
        render_crew(crew, files_for(crew))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"  # nats_url: nats://nats.example:4222": "  nats_url: nats://nats.example.com:4222"},
            "set kubernetes.nats_peer",
        ),
        ({"source: {env: AGENT_SMITH_SECRET_GITHUB}": "source: {file: secrets/github}"}, "needs an absolute path"),
        # The channel reaches the homeserver directly, never through the firewall.
        (
            {"homeserver: http://127.0.0.1:8008": "homeserver: https://matrix.example.org"},
            "matrix.homeserver: matrix.example.org is outside the cluster; set kubernetes.matrix_peer",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_key(tmp_path: Path, replace: dict[str, str], message: str) -> None:
    loaded = example_crew(tmp_path, replace)
    with pytest.raises(UsageError) as caught:
        render_crew(loaded.crew, crew_files(loaded))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {
                "    permission_mode: acceptEdits\n    first_run_prompt": "    resources: {cpu_request: lots}\n    permission_mode: acceptEdits\n    first_run_prompt"
            },
            "agents[0].resources.cpu_request: 'lots' is not a Kubernetes quantity",
        ),
        (
            {
                "    permission_mode: acceptEdits\n    first_run_prompt": "    resources: {memory_request: 8Gi}\n    permission_mode: acceptEdits\n    first_run_prompt"
            },
            "agents[0].resources: memory_request is larger than memory_limit",
        ),
        (
            {"egress:\n": "kubernetes:\n  transparent_egress: true\negress:\n"},
            "kubernetes.transparent_egress: needs egress.transparent_listen",
        ),
        ({"egress:\n": "kubernetes:\n  nats_storage: big\negress:\n"}, "kubernetes.nats_storage: 'big'"),
    ],
)  # fmt: skip
def test_what_the_render_would_refuse_validate_finds_at_its_line(
    tmp_path: Path, replace: dict[str, str], message: str
) -> None:
    with pytest.raises(CrewError) as caught:
        example_crew(tmp_path, replace)
    found = [str(p) for p in caught.value.problems]
    assert all(p.startswith(f"{tmp_path / 'crew' / 'crew.yaml'}:") for p in found), found
    assert any(message in p for p in found), found


def test_a_crew_made_in_code_gets_the_same_kubernetes_checks_from_the_render(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    crew = loaded.crew.model_copy(
        update={"kubernetes": loaded.crew.kubernetes.model_copy(update={"transparent_egress": True})}
    )
    with pytest.raises(
        UsageError, match=r"^crew.yaml: kubernetes.transparent_egress: needs egress.transparent_listen$"
    ):
        render_crew(crew, files)


def test_crew_files_that_cannot_be_configmap_keys_are_refused(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    with pytest.raises(UsageError, match="may use only letters"):
        render_crew(loaded.crew, {**files, "agents/devbot/notes with space.md": "x"})
    with pytest.raises(UsageError, match="collides"):
        render_crew(loaded.crew, {**files, "agents/devbot/a__b.md": "x", "agents/devbot/a/b.md": "y"})
    with pytest.raises(UsageError, match="a ConfigMap holds at most"):
        render_crew(loaded.crew, {**files, "agents/devbot/big.md": "x" * (1 << 20)})


def test_a_read_write_role_is_said_to_reach_the_namespace_s_secrets(tmp_path: Path) -> None:
    role = "version: 1\nkubernetes: {agent_role: true, agent_role_access: read-write}\n"
    loaded = example_crew(tmp_path, {"version: 1\n": role})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    [warning] = [w for w in rendered.warnings if "agent_role_access" in w]
    assert "may create pods that mount any Secret of namespace agent-smith" in warning
    read_only = example_crew(tmp_path / "ro", {"version: 1\n": "version: 1\nkubernetes: {agent_role: true}\n"})
    assert not [w for w in render_crew(read_only.crew, crew_files(read_only)).warnings if "agent_role_access" in w]


def test_warnings_name_what_the_network_cannot_allow(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    rendered = render_crew(loaded.crew, files)
    assert any("matrix.homeserver points at loopback" in w for w in rendered.warnings)
    assert len(rendered.warnings) == len(set(rendered.warnings))


@pytest.mark.parametrize("host", ["localhost", "[::1]"])
def test_a_loopback_homeserver_by_name_is_said_and_opens_no_namespace(tmp_path: Path, host: str) -> None:
    """`localhost` is one label like a Service name, but in a pod it is the pod: the channel would
    be dead, and a rule to the crew's own namespace would open it to every pod there."""
    loaded = example_crew(tmp_path, {"homeserver: http://127.0.0.1:8008": f"homeserver: http://{host}:8008"})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    assert any("matrix.homeserver points at loopback" in w for w in rendered.warnings)
    policy = next(
        m for m in rendered.manifests if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].endswith("-devbot")
    )
    assert all(port["port"] != 8008 for rule in policy["spec"]["egress"] for port in rule["ports"])


def test_a_loopback_nats_server_by_name_is_refused(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {"  # nats_url: nats://nats.example:4222": "  nats_url: nats://localhost:4222"})
    with pytest.raises(UsageError, match=r"events\.nats_url: localhost is not an in-cluster Service"):
        render_crew(loaded.crew, crew_files(loaded))


# ---- the pods' environment loads the crew as the container contract says --------------------


def _secret_values(rendered: Any) -> dict[tuple[str, str], str]:
    values = {}
    for ref in rendered.external:
        for key in ref.keys:
            values[(ref.name, key)] = f"test-{ref.name}-{key}"
    return values


def test_every_pod_environment_loads_the_crew_it_was_rendered_from(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    rendered = render_crew(loaded.crew, files)
    config = one(rendered.manifests, "ConfigMap", "agent-smith-crew")
    secrets = _secret_values(rendered)
    for workload in by(rendered.manifests, "StatefulSet") + by(rendered.manifests, "Deployment"):
        pod = workload["spec"]["template"]["spec"]
        crew_volume = next((v for v in pod.get("volumes", []) if v["name"] == "crew"), None)
        if crew_volume is None:
            continue
        mount = tmp_path / "pods" / workload["metadata"]["name"]
        materialize_config(config, crew_volume, mount)
        container = pod["containers"][0]
        env = resolve_env(container["env"], secrets)
        assert env["AGENT_SMITH_CREW"] == CREW_MOUNT
        in_pod = load_crew(mount, env=env)
        assert in_pod.crew.events.nats_url == env["NATS_URL"]
        if "AGENT_NAME" in env:
            agent = in_pod.crew.agent(env["AGENT_NAME"])
            assert in_pod.crew.egress.ca_cert == CA_FILE
            assert agent.repos == loaded.crew.agent(agent.name).repos
            proxy = urlsplit(env["HTTPS_PROXY"])
            assert (proxy.username, proxy.password) == (agent.name, f"test-agent-smith-proxy-{agent.name}-password")
            assert proxy.hostname == "agent-smith-firewall.agent-smith.svc"
            assert env["MATRIX_ACCESS_TOKEN"] == f"test-agent-smith-matrix-{agent.name}-access_token"
            port = in_pod.crew.runtime.metrics_listen.rsplit(":", 1)[1]
            assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
            assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
            assert container["ports"] == [{"name": "metrics", "containerPort": int(port), "protocol": "TCP"}]
        else:
            assert in_pod.crew.egress.listen == "0.0.0.0:3128"
            assert env["AGENT_SMITH_SECRET_GITHUB"] == "test-agent-smith-firewall-secrets-github"


def test_the_proxy_url_a_pod_builds_is_the_one_the_firewall_derives(tmp_path: Path) -> None:
    from agent_smith.egress import proxy_url_for

    loaded, files = example(tmp_path)
    state = {"runtime": loaded.crew.runtime.model_copy(update={"state_dir": str(tmp_path / "state")})}
    crew = loaded.crew.model_copy(update=state)
    rendered = render_crew(crew, files)
    pod = one(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    password = urlsplit(proxy_url_for(crew, "devbot")).password
    assert password
    secrets = {**_secret_values(rendered), ("agent-smith-proxy-devbot", "password"): password}
    env = resolve_env(pod["containers"][0]["env"], secrets)
    in_cluster = crew.model_copy(
        update={"egress": crew.egress.model_copy(update={"listen": "agent-smith-firewall.agent-smith.svc:3128"})}
    )
    assert env["HTTPS_PROXY"] == proxy_url_for(in_cluster, "devbot")


# ---- generated crews --------------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crews())
def test_every_generated_crew_renders_valid_and_keeps_every_promise(data: dict[str, Any]) -> None:
    crew = Crew.model_validate(data)
    rendered = render_crew(crew, files_for(crew))
    assert check_manifests(rendered.manifests, rendered.external, secret_env=secret_env_of(crew)) == []
    assert validate_strict(rendered.manifests, ("1.30", "1.37")) == []
    yaml_text = to_yaml_stream(rendered.manifests)
    for rule in crew.egress.secrets:
        assert rule.source.env is None or f"value: {rule.source.env}" not in yaml_text
    assert len(by(rendered.manifests, "StatefulSet")) == len(crew.agents) + (crew.events.nats_url is None)
    for agent in crew.agents:
        sts = one(rendered.manifests, "StatefulSet", f"agent-smith-agent-{agent.name}")
        requests = sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests == {"cpu": agent.resources.cpu_request, "memory": agent.resources.memory_request}
        role = by(rendered.manifests, "Role", f"agent-smith-agent-{agent.name}")
        assert len(role) == int(crew.kubernetes.agent_role)
        if crew.kubernetes.storage_class:
            classes = {t["spec"].get("storageClassName") for t in sts["spec"]["volumeClaimTemplates"]}
            assert classes == {crew.kubernetes.storage_class}


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crews(max_agents=2))
def test_generated_crews_are_valid_in_every_version(data: dict[str, Any]) -> None:
    crew = Crew.model_validate(data)
    assert validate_strict(render_crew(crew, files_for(crew)).manifests, VERSIONS) == []


# ---- the checker can fail -----------------------------------------------------------------------


def _mutate(manifests: list[dict[str, Any]], kind: str, name: str, edit: Any) -> list[dict[str, Any]]:
    out = copy.deepcopy(manifests)
    for obj in out:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            edit(obj)
    return out


def _pod(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def _main(obj: dict[str, Any]) -> dict[str, Any]:
    return _pod(obj)["containers"][0]


AGENT = "agent-smith-agent-devbot"
MUTATIONS = [
    (
        "selector",
        "StatefulSet",
        AGENT,
        lambda o: o["spec"]["selector"]["matchLabels"].update({"x": "y"}),
        "selector does not match",
    ),
    (
        "service selector",
        "Service",
        FIREWALL,
        lambda o: o["spec"]["selector"].update({"x": "y"}),
        "matches no rendered pod",
    ),
    (
        "service target port",
        "Service",
        FIREWALL,
        lambda o: o["spec"]["ports"][0].update(targetPort="nowhere"),
        "targetPort nowhere is no port",
    ),
    (
        "policy selector",
        "NetworkPolicy",
        AGENT,
        lambda o: o["spec"]["podSelector"]["matchLabels"].update({"x": "y"}),
        "podSelector matches no rendered pod",
    ),
    (
        "service account",
        "StatefulSet",
        AGENT,
        lambda o: _pod(o).update(serviceAccountName="nobody"),
        "ServiceAccount nobody",
    ),
    (
        "config key",
        "StatefulSet",
        AGENT,
        lambda o: _pod(o)["volumes"][0]["configMap"]["items"].append({"key": "nope", "path": "n"}),
        "has no key 'nope'",
    ),
    (
        "secret",
        "StatefulSet",
        AGENT,
        lambda o: _main(o)["env"].append({"name": "X", "valueFrom": {"secretKeyRef": {"name": "ghost", "key": "k"}}}),
        "Secret ghost is neither",
    ),
    (
        "secret key",
        "StatefulSet",
        AGENT,
        lambda o: _main(o)["env"].append(
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": "agent-smith-proxy-devbot", "key": "nope"}}}
        ),
        "has no key 'nope'",
    ),
    (
        "inline secret",
        "StatefulSet",
        AGENT,
        lambda o: _main(o)["env"].append({"name": "MATRIX_ACCESS_TOKEN", "value": "syt_abc"}),
        "MATRIX_ACCESS_TOKEN is inline",
    ),
    (
        "credential",
        "StatefulSet",
        AGENT,
        lambda o: _main(o)["env"].append({"name": "X", "value": "ghp_" + "a" * 36}),
        "looks like",
    ),
    (
        "root",
        "StatefulSet",
        AGENT,
        lambda o: (_pod(o)["securityContext"].pop("runAsNonRoot"), _main(o)["securityContext"].pop("runAsNonRoot")),
        "may run as root",
    ),
    (
        "writable root",
        "Deployment",
        FIREWALL,
        lambda o: _main(o)["securityContext"].update(readOnlyRootFilesystem=False),
        "writable root filesystem",
    ),
    (
        "escalation",
        "StatefulSet",
        "agent-smith-nats",
        lambda o: _main(o)["securityContext"].pop("allowPrivilegeEscalation"),
        "privilege escalation",
    ),
    ("limits", "StatefulSet", AGENT, lambda o: _main(o)["resources"].pop("limits"), "no cpu and memory limits"),
    (
        "pvc",
        "Deployment",
        FIREWALL,
        lambda o: _pod(o)["volumes"][0].update(persistentVolumeClaim={"claimName": "gone"}),
        "PersistentVolumeClaim gone",
    ),
    (
        "mount",
        "Deployment",
        FIREWALL,
        lambda o: _main(o)["volumeMounts"].append({"name": "nowhere", "mountPath": "/x"}),
        "unknown volume nowhere",
    ),
    ("service name", "StatefulSet", AGENT, lambda o: o["spec"].update(serviceName="gone"), "serviceName gone"),
    (
        "policy types",
        "NetworkPolicy",
        AGENT,
        lambda o: o["spec"].update(policyTypes=["Ingress"]),
        "no NetworkPolicy restricts",
    ),
    (
        "namespace",
        "ConfigMap",
        "agent-smith-crew",
        lambda o: o["metadata"].update(namespace="other"),
        "several namespaces",
    ),
]


@pytest.mark.parametrize(("what", "kind", "name", "edit", "expected"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_each_promise_is_checked(tmp_path: Path, what: str, kind: str, name: str, edit: Any, expected: str) -> None:
    loaded = example_crew(tmp_path, {"egress:\n": "kubernetes:\n  agent_role: true\negress:\n"})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    broken = _mutate(list(rendered.manifests), kind, name, edit)
    problems = check_manifests(broken, rendered.external)
    assert any(expected in p for p in problems), problems


def test_a_secret_object_and_a_role_on_secrets_are_refused(tmp_path: Path) -> None:
    loaded = example_crew(tmp_path, {"egress:\n": "kubernetes:\n  agent_role: true\negress:\n"})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    manifests = list(rendered.manifests)
    manifests.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "agent-smith"}})
    manifests = _mutate(manifests, "Role", AGENT, lambda o: o["rules"][0]["resources"].append("secrets"))
    problems = check_manifests(manifests, rendered.external)
    assert any("a Secret with its values is in the render" in p for p in problems)
    assert any("grants access to Secrets" in p for p in problems)


def test_the_schema_check_catches_an_unknown_field(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    manifests = _mutate(
        list(render_crew(loaded.crew, files).manifests), "StatefulSet", AGENT, lambda o: _main(o).update(bogus=1)
    )
    problems = validate_strict(manifests, ("1.30",))
    assert problems
    assert "bogus" in str(problems[0])


# ---- pure helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", 0.5),
        ("2", 2.0),
        ("1Gi", 2.0**30),
        ("1G", 1e9),
        ("1.5", 1.5),
        ("1e3", 1000.0),
        ("2E-1", 0.2),
        ("128Mi", 128 * 2.0**20),
        # Exa and exbi begin as an exponent does.
        ("1E", 1e18),
        ("1Ei", 2.0**60),
    ],
)
def test_quantities_parse_as_kubernetes_reads_them(text: str, value: float) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1GB", "-1", "1 Gi", "Gi"])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity(text)


@pytest.mark.parametrize(
    ("host", "namespace"),
    [
        ("synapse", "own"),
        ("synapse.chat", None),
        ("matrix.org", None),
        ("synapse.chat.svc", "chat"),
        ("synapse.chat.svc.cluster.local", "chat"),
        ("matrix.example.org", None),
        ("127.0.0.1", None),
        # One label, and no Service: in a pod, the pod itself.
        ("localhost", None),
        ("::1", None),
        ("fd00::5", None),
    ],
)
def test_in_cluster_hosts_name_their_namespace(host: str, namespace: str | None) -> None:
    assert in_cluster_namespace(host, "own") == namespace


def test_url_ports_default_by_scheme() -> None:
    assert url_endpoint("https://m.example.org", {"https": 443}) == ("m.example.org", 443)
    assert url_endpoint("nats://n.svc:4333", {"nats": 4222}) == ("n.svc", 4333)


IMAGES = [
    ("ghcr.io/acme/agent-smith:latest", "Always"),
    ("ghcr.io/acme/agent-smith", "Always"),
    ("registry.example:5000/agent-smith", "Always"),
    ("registry.example:5000/agent-smith:v1.4.0", "IfNotPresent"),
    ("ghcr.io/acme/agent-smith:v1.4.0", "IfNotPresent"),
    ("ghcr.io/acme/agent-smith@sha256:" + "ab" * 32, "IfNotPresent"),
]


@pytest.mark.parametrize(("image", "policy"), IMAGES)
def test_an_unpinned_image_is_pulled_at_every_start_and_said_to_be_unpinned(image: str, policy: str) -> None:
    crew = Crew.model_validate({"crew": {"name": "pull"}, "agents": [{"name": "solo"}], "kubernetes": {"image": image}})
    rendered = render_crew(crew, files_for(crew))
    containers = [
        c
        for m in rendered.manifests
        if m["kind"] in ("StatefulSet", "Deployment")
        for c in m["spec"]["template"]["spec"].get("initContainers", []) + m["spec"]["template"]["spec"]["containers"]
    ]
    policies = {c["imagePullPolicy"] for c in containers if c["image"] == image}
    assert policies == {policy}
    # The NATS image is pinned: a node keeps it.
    assert {c["imagePullPolicy"] for c in containers if c["image"] == crew.kubernetes.nats_image} == {"IfNotPresent"}
    unpinned = [w for w in rendered.warnings if w.startswith("kubernetes.image")]
    assert len(unpinned) == (policy == "Always")


def test_an_agent_s_env_reaches_its_process_as_crew_yaml_writes_it() -> None:
    literal = {
        "PRICE": "5$$ each",
        "REF": "$(AGENT_SMITH_PROXY_PASSWORD)",
        "NAME": "$(AGENT_NAME)",
        "SHELLISH": "$HOME/$(",
    }
    crew = Crew.model_validate({"crew": {"name": "dollars"}, "agents": [{"name": "solo", "env": literal}]})
    rendered = render_crew(crew, files_for(crew))
    secrets = {(ref.name, key): f"test-{ref.name}-{key}" for ref in rendered.external for key in ref.keys}
    pod = one(rendered.manifests, "StatefulSet", "agent-smith-agent-solo")["spec"]["template"]["spec"]
    for container in pod["initContainers"][1:] + pod["containers"]:
        env = resolve_env(container["env"], secrets)
        assert {key: env[key] for key in literal} == literal


# ---- rollout: each agent restarts for what its pods read, and for nothing else ------------------


@pytest.mark.parametrize(("what", "replace", "files", "rolled"), ROLLOUT_EDITS, ids=[e[0] for e in ROLLOUT_EDITS])
def test_an_edit_restarts_exactly_the_agents_whose_pods_read_it(
    tmp_path: Path, what: str, replace: dict[str, str], files: dict[str, str | bytes], rolled: set[str]
) -> None:
    before = rollout_hashes(render_crew(*edited_example(tmp_path / "before", {}, {})).manifests)
    after = rollout_hashes(render_crew(*edited_example(tmp_path / "after", replace, files)).manifests)
    assert set(before) == {"devbot", "reviewbot"}
    assert {agent for agent in before if before[agent] != after[agent]} == rolled


def _what_devbot_reads_of_its_team(crew: Crew) -> Any:
    # The consumers of a teammate's entry in devbot's pod: its home's team section, its chat roster.
    return plan.team_section(crew, "devbot"), chat_config(crew, "devbot", "token").roster


@pytest.mark.parametrize(
    ("what", "replace", "files", "rolled"),
    [e for e in ROLLOUT_EDITS if e[0].startswith("reviewbot's")],
    ids=[e[0] for e in ROLLOUT_EDITS if e[0].startswith("reviewbot's")],
)
def test_a_teammate_s_edit_restarts_an_agent_exactly_when_what_the_agent_reads_of_it_changes(
    tmp_path: Path, what: str, replace: dict[str, str], files: dict[str, str | bytes], rolled: set[str]
) -> None:
    before, _ = edited_example(tmp_path / "before", {}, {})
    after, _ = edited_example(tmp_path / "after", replace, files)
    changed = _what_devbot_reads_of_its_team(before) != _what_devbot_reads_of_its_team(after)
    assert changed == ("devbot" in rolled)


def test_the_firewall_restarts_for_crew_yaml_and_not_for_a_persona(tmp_path: Path) -> None:
    def firewall_hash(crew: Crew, files: Any) -> str:
        firewall = one(render_crew(crew, files).manifests, "Deployment", FIREWALL)
        return str(firewall["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH])

    base = firewall_hash(*edited_example(tmp_path / "base", {}, {}))
    assert firewall_hash(*edited_example(tmp_path / "image", {}, {"agents/devbot/a.png": IMAGE})) == base
    assert firewall_hash(*edited_example(tmp_path / "allow", {"max_age: 30d": "max_age: 7d"}, {})) != base


# ---- the NATS StatefulSet's governing Service ------------------------------------------------------


def test_nats_is_governed_by_a_headless_service_and_reached_through_its_cluster_ip(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    manifests = render_crew(loaded.crew, files).manifests
    nats = one(manifests, "StatefulSet", NATS)
    governing = one(manifests, "Service", nats["spec"]["serviceName"])
    assert governing["spec"]["clusterIP"] == "None"
    assert governing["spec"]["selector"].items() <= nats["spec"]["template"]["metadata"]["labels"].items()
    # Clients keep the stable ClusterIP Service their NATS_URL names.
    client = one(manifests, "Service", NATS)
    assert client["spec"]["type"] == "ClusterIP"
    assert "clusterIP" not in client["spec"]
    pod = one(manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    assert {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}["NATS_URL"] == (
        f"nats://{NATS}.agent-smith.svc:4222"
    )
    # The policies are about pods, whichever Service a client resolved: agents and the firewall get in, no one else.
    nats_pod = pod_labels(manifests, "StatefulSet", NATS)
    for source in (
        pod_labels(manifests, "StatefulSet", "agent-smith-agent-devbot"),
        pod_labels(manifests, "Deployment", FIREWALL),
    ):
        assert allows(manifests, source, nats_pod, 4222)
        assert not allows(manifests, source, nats_pod, 8222)
    assert not allows(manifests, {"app": "elsewhere"}, nats_pod, 4222)


# ---- files that are not text --------------------------------------------------------------------


def test_a_binary_persona_file_is_mounted_byte_for_byte_from_binary_data(tmp_path: Path) -> None:
    crew, files = edited_example(tmp_path / "crew", {}, {"agents/devbot/avatar.png": IMAGE})
    assert files["agents/devbot/avatar.png"] == IMAGE
    rendered = render_crew(crew, files)
    assert check_manifests(rendered.manifests, rendered.external, secret_env=secret_env_of(crew)) == []
    assert validate_strict(rendered.manifests, ("1.30", "1.37")) == []
    config = one(rendered.manifests, "ConfigMap", "agent-smith-crew")
    assert config["binaryData"] == {"agents__devbot__avatar.png": base64.b64encode(IMAGE).decode()}
    assert "agents__devbot__avatar.png" not in config["data"]
    pod = one(rendered.manifests, "StatefulSet", "agent-smith-agent-devbot")["spec"]["template"]["spec"]
    mount = tmp_path / "mounted"
    materialize_config(config, next(v for v in pod["volumes"] if v["name"] == "crew"), mount)
    assert (mount / "agents/devbot/avatar.png").read_bytes() == IMAGE
    assert load_crew(mount, env={}).crew.agent("devbot").name == "devbot"
    # Read back as kubectl and Helm read YAML.
    docs = list(YAML(typ="safe", pure=True).load_all(to_yaml_stream(rendered.manifests)))
    assert next(d for d in docs if d["kind"] == "ConfigMap")["binaryData"] == config["binaryData"]


def test_editor_swap_and_backup_files_stay_out_of_the_config_map(tmp_path: Path) -> None:
    litter: dict[str, str | bytes] = {
        "agents/devbot/.CLAUDE.md.swp": b"b0VIM 9.0\x00\x00\xff",
        "agents/devbot/.CLAUDE.md.swo": b"b0VIM 9.0\x00\x00\xfe",
        "agents/devbot/CLAUDE.md~": "# the version before\n",
        "agents/devbot/subagents/test-writer.md~": "---\n---\n",
        "agents/_shared/.DS_Store": b"\x00\x00\x00\x01Bud1",
    }
    _, files = edited_example(tmp_path, {}, litter)
    assert not set(litter) & set(files)
    assert "agents/devbot/CLAUDE.md" in files


def test_the_size_limit_counts_a_binary_file_s_bytes_not_its_base64(tmp_path: Path) -> None:
    loaded, files = example(tmp_path)
    room = CONFIGMAP_LIMIT - configmap_size(files)
    # Its base64 is a third larger than the room, which the API server does not count.
    fits = {**files, "agents/devbot/big.bin": b"\xff" * room}
    assert configmap_size(fits) == CONFIGMAP_LIMIT
    config = one(render_crew(loaded.crew, fits).manifests, "ConfigMap", "agent-smith-crew")
    assert len(config["binaryData"]["agents__devbot__big.bin"]) > room
    with pytest.raises(UsageError, match=f"take {CONFIGMAP_LIMIT + 1} bytes; a ConfigMap holds at most"):
        render_crew(loaded.crew, {**files, "agents/devbot/big.bin": b"\xff" * (room + 1)})


def test_a_peer_s_pods_are_reached_on_the_port_they_listen_on(tmp_path: Path) -> None:
    """A homeserver Service on 80 in front of pods on 8008: a NetworkPolicy matches the pod's port, so
    the agents' egress names 8008 (`kubernetes.matrix_peer.port`), not the URL's 80."""
    homeserver = "matrix:\n  homeserver: http://synapse.matrix.svc:80\n"
    peer = "kubernetes:\n  matrix_peer: {namespace: matrix, pod_labels: {app: synapse}, port: 8008}\n"
    loaded = example_crew(tmp_path, {"matrix:\n  homeserver: http://127.0.0.1:8008\n": peer + homeserver})
    rendered = render_crew(loaded.crew, crew_files(loaded))
    assert check_manifests(rendered.manifests, rendered.external, secret_env=secret_env_of(loaded.crew)) == []
    synapse = {"app": "synapse"}
    policy = next(m for m in rendered.manifests if m["kind"] == "NetworkPolicy" and "devbot" in m["metadata"]["name"])
    rule = next(r for r in policy["spec"]["egress"] if r["to"][0].get("podSelector") == {"matchLabels": synapse})
    assert rule["to"][0]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "matrix"}}
    assert rule["ports"] == [{"protocol": "TCP", "port": 8008}]


def test_the_cluster_s_dns_is_kube_dns_unless_the_crew_names_its_own(tmp_path: Path) -> None:
    """OpenShift's DNS pods are openshift-dns's, on 5353: every pod of the render must reach them, or
    no name resolves (the firewall's upstreams, the agents' NATS and homeserver)."""
    peer = "kubernetes:\n  dns_peer: {namespace: openshift-dns, pod_labels: {app: dns}, port: 5353}\n"
    for replace, to, port in (
        ({}, {"k8s-app": "kube-dns"}, 53),
        ({"\nmatrix:\n  homeserver:": "\n" + peer + "matrix:\n  homeserver:"}, {"app": "dns"}, 5353),
    ):
        loaded = example_crew(tmp_path / str(port), replace)
        rendered = render_crew(loaded.crew, crew_files(loaded))
        policies = [m for m in rendered.manifests if m["kind"] == "NetworkPolicy" and m["spec"].get("egress")]
        assert len(policies) >= 3  # the firewall, and each agent
        for policy in policies:
            [rule] = [r for r in policy["spec"]["egress"] if r["to"][0].get("podSelector") == {"matchLabels": to}]
            assert rule["ports"] == [{"protocol": "UDP", "port": port}, {"protocol": "TCP", "port": port}]
