"""The crew as Kubernetes objects: a pure function from the crew model and its files to manifest dicts.

Nothing here reads a file or the clock, so the same crew always renders the
same objects, and the tests can render thousands of generated crews. Secret
values never appear: every secret is a ``secretKeyRef`` to a Secret the
operator creates (listed in ``Rendered.external``) or an ExternalSecret.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from agent_smith.crew import Agent, Crew, kubernetes_problems, nats_servers
from agent_smith.crew.loader import format_loc
from agent_smith.crew.models import AgentKubernetes, NetworkPeer, parse_quantity
from agent_smith.errors import UsageError

Manifest = dict[str, Any]

PART_OF = "agent-smith"
AGENT_LABEL = "agent-smith.dev/agent"
CONFIG_HASH = "agent-smith.dev/config-hash"

CREW_MOUNT = "/etc/agent-smith/crew"
CA_MOUNT = "/etc/agent-smith/ca"
CA_FILE = f"{CA_MOUNT}/ca.pem"
STATE_DIR = "/var/lib/agent-smith"
UID = 10001

FIREWALL = "agent-smith-firewall"
NATS = "agent-smith-nats"
# The StatefulSet's governing Service: headless, as the API requires; clients use the ClusterIP `NATS`.
NATS_HEADLESS = f"{NATS}-headless"
CREW_CONFIG = "agent-smith-crew"
FIREWALL_CA_SECRET = "agent-smith-firewall-ca"
FIREWALL_IDENTITY_SECRET = "agent-smith-firewall-identity"
FIREWALL_SECRETS = "agent-smith-firewall-secrets"
NATS_PORT = 4222
# A NATS URL's port when it names none, by scheme, as the client defaults it.
_NATS_PORTS = {"nats": NATS_PORT, "tls": NATS_PORT, "ws": 80, "wss": 443}
NATS_MONITOR_PORT = 8222
METRICS_PORT = 9464
CONFIGMAP_LIMIT = 1 << 20
SHARED_FILES = "agents/_shared/"

# A crew file as its ConfigMap carries it: UTF-8 text under `data`, any other bytes under `binaryData`.
FileContent = str | bytes


def file_bytes(content: FileContent) -> bytes:
    return content.encode() if isinstance(content, str) else content


def configmap_size(files: Mapping[str, FileContent]) -> int:
    """The bytes the API server counts against a ConfigMap's limit: each value's own bytes.

    `binaryData` is counted decoded (ValidateConfigMap sums the length of each
    []byte): base64 is only how JSON and YAML carry it, 4/3 of its size.
    """
    return sum(len(file_bytes(content)) for content in files.values())


def check_fits_a_configmap(files: Mapping[str, FileContent]) -> None:
    """The crew's files go into one ConfigMap (rendered, or by the chart): refuse what Kubernetes would."""
    total = configmap_size(files)
    if total > CONFIGMAP_LIMIT:
        raise UsageError(f"the crew's files take {total} bytes; a ConfigMap holds at most {CONFIGMAP_LIMIT}")


def agent_files_prefix(agent: str) -> str:
    return f"agents/{agent}/"


_IP_LITERAL = re.compile(r"[0-9.]+")
# What the API server takes as a hostAliases name (a DNS-1123 subdomain).
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# What a Service may be called (a DNS-1035 label): a bare host name of that shape may be one.
_SERVICE_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Kubernetes' own quantity grammar (k8s.io/apimachinery resource.Quantity).
_PRIVATE_V4 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
_PRIVATE_V6 = ["fc00::/7", "fe80::/10"]
_DNS = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
}
_DNS_PORTS = [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]


@dataclass(frozen=True)
class ExternalSecretRef:
    """A Secret the render refers to but does not contain: the operator (or a controller) creates it."""

    name: str
    keys: tuple[str, ...]
    purpose: str


@dataclass(frozen=True)
class Rendered:
    manifests: tuple[Manifest, ...]
    external: tuple[ExternalSecretRef, ...]
    warnings: tuple[str, ...]
    namespace: str


def agent_object_name(agent: str) -> str:
    return f"agent-smith-agent-{agent}"


def agent_firewall_name(agent: str) -> str:
    """The Service in front of an agent's own transparent listener on the firewall."""
    return f"{FIREWALL}-{agent}"


def agent_firewall_port_name(port: int) -> str:
    """The firewall container's name for an agent's listener port (a port name holds 15 characters, a name 32)."""
    return f"agent-{port}"


def proxy_secret_name(agent: str) -> str:
    return f"agent-smith-proxy-{agent}"


def matrix_secret_name(agent: str) -> str:
    return f"agent-smith-matrix-{agent}"


def config_key(path: str) -> str:
    """The ConfigMap key of a crew file: its relative path with ``/`` spelled ``__``."""
    return path.replace("/", "__")


def crew_state_root(crew: Crew) -> str:
    return f"{STATE_DIR}/{crew.crew.name}"


def agent_home(crew: Crew, agent: str) -> str:
    return f"{crew_state_root(crew)}/agents/{agent}/home"


def agent_workspace(crew: Crew, agent: str) -> str:
    return f"{crew_state_root(crew)}/agents/{agent}/workspace"


def firewall_state(crew: Crew) -> str:
    return f"{crew_state_root(crew)}/firewall"


def render_crew(crew: Crew, files: Mapping[str, FileContent], *, namespace: str | None = None) -> Rendered:
    """Every object of the crew's deployment, in apply order.

    `files` maps crew-relative paths to their text, or to their bytes when they are not UTF-8.
    """
    return _Renderer(crew, files, namespace or crew.kubernetes.namespace).render()


def _teammate(agent: Agent) -> dict[str, Any]:
    """What an agent's pod reads of a teammate: its team section (home), its hook context and its
    chat roster name the teammate by these, and by nothing else of its entry."""
    matrix = agent.matrix
    return {
        "name": agent.name,
        "role": agent.role,
        "login": agent.login,
        "matrix": None if matrix is None else {"user_id": matrix.user_id, "display_name": matrix.display_name},
    }


def agent_inputs(crew: Crew, files: Mapping[str, FileContent], name: str) -> dict[str, Any]:
    """What `name`'s pods read of the crew, as plain data: its pod template's rollout hash covers this.

    Every pod mounts the whole crew directory (the loader wants every persona), but an
    agent's assembly and processes use only the crew-level settings, its own entry and
    files, `agents/_shared/`, and what each teammate is called. A change to another
    agent's persona or entry (its CLAUDE.md, resources, repos) must not restart this
    agent: a restart ends its in-flight work.
    """
    own = agent_files_prefix(name)
    return {
        "crew": crew.model_dump(mode="json", exclude={"agents", "schema_ref"}),
        "agent": crew.agent(name).model_dump(mode="json"),
        "teammates": [_teammate(mate) for mate in crew.teammates(name)],
        "files": {
            path: hashlib.sha256(file_bytes(content)).hexdigest()
            for path, content in sorted(files.items())
            if path.startswith((SHARED_FILES, own))
        },
    }


# ---- pure helpers -------------------------------------------------------------------------


def listen_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def url_endpoint(url: str, default_ports: Mapping[str, int]) -> tuple[str, int]:
    """(host, port) of a URL, the port defaulted by scheme."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"{url!r}: invalid port") from exc
    return host, port or default_ports.get(parts.scheme, 443)


def in_cluster_namespace(host: str, own: str) -> str | None:
    """The namespace of an in-cluster Service host name (``name`` or ``name.ns.svc[.domain]``).

    ``name.ns`` also resolves in a pod, but reads like a public name (``matrix.org``): not guessed.
    ``localhost`` and an IPv6 literal are one label too, and no Service: in a pod they are the pod.
    """
    labels = host.split(".")
    if len(labels) == 1:
        return own if _SERVICE_NAME.fullmatch(host) and host != "localhost" else None
    if len(labels) >= 3 and labels[2] == "svc":
        return labels[1]
    return None


def _peer_to(peer: NetworkPeer) -> Manifest:
    if peer.cidr is not None:
        return {"ipBlock": {"cidr": peer.cidr}}
    to: Manifest = {}
    if peer.namespace is not None:
        to["namespaceSelector"] = {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}}
    to["podSelector"] = {"matchLabels": dict(peer.pod_labels)}
    return to


def _peer_ports(peer: NetworkPeer, ports: list[Manifest]) -> list[Manifest]:
    """The ports a NetworkPolicy admits toward `peer`: its pods' own, when it names it, else `ports`."""
    return ports if peer.port is None else [{"protocol": "TCP", "port": peer.port}]


def _config_hash(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(data.items())), sort_keys=True).encode()).hexdigest()


def _container_security() -> Manifest:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> Manifest:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "fsGroup": UID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _secret_env(name: str, secret: str, key: str) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(name: str, value: str) -> Manifest:
    return {"name": name, "value": value}


def image_is_pinned(image: str) -> bool:
    """A digest, or a tag other than ``latest``: what names one build ("host:5000/img" has no tag)."""
    if "@" in image:
        return True
    tag = image.rsplit("/", 1)[-1].partition(":")[2]
    return tag not in ("", "latest")


def pull_policy(image: str) -> str:
    """Kubernetes' own default, said: an unpinned image is pulled at every start, or a node keeps an old one."""
    return "IfNotPresent" if image_is_pinned(image) else "Always"


class _Renderer:
    def __init__(self, crew: Crew, files: Mapping[str, FileContent], namespace: str) -> None:
        self.crew = crew
        self.files = dict(files)
        self.ns = namespace
        self.k8s = crew.kubernetes
        self.warnings: list[str] = []
        self.external: list[ExternalSecretRef] = []
        self.instance = crew.crew.name
        self.proxy_port = listen_port(crew.egress.listen)
        self.transparent_port = listen_port(crew.egress.transparent_listen) if crew.egress.transparent_listen else None
        self.firewall_host = f"{FIREWALL}.{namespace}.svc"
        # Agents with a transparent listener of their own; without transparent_egress nothing routes to one.
        self.own_listeners: dict[str, AgentKubernetes] = {
            agent.name: agent.kubernetes
            for agent in crew.agents
            if agent.kubernetes is not None and crew.kubernetes.transparent_egress
        }

    # -- labels ---------------------------------------------------------------------------

    def selector(self, component: str, agent: str | None = None) -> dict[str, str]:
        labels = {
            "app.kubernetes.io/name": PART_OF,
            "app.kubernetes.io/instance": self.instance,
            "app.kubernetes.io/component": component,
        }
        if agent is not None:
            labels[AGENT_LABEL] = agent
        return labels

    def labels(self, component: str, agent: str | None = None) -> dict[str, str]:
        return {**self.selector(component, agent), "app.kubernetes.io/managed-by": PART_OF}

    def meta(self, name: str, component: str, agent: str | None = None) -> Manifest:
        return {"name": name, "namespace": self.ns, "labels": self.labels(component, agent)}

    # -- the whole render -----------------------------------------------------------------

    def render(self) -> Rendered:
        self._check_inputs()
        config = self._crew_config()
        out: list[Manifest] = [config]
        out += self._firewall_secrets()
        out += self._firewall()
        if self.crew.events.nats_url is None:
            out += self._nats()
        for agent in self.crew.agents:
            out += self._agent(agent)
        self.external.sort(key=lambda ref: ref.name)
        warnings = tuple(dict.fromkeys(self.warnings))
        return Rendered(tuple(out), tuple(self.external), warnings, self.ns)

    def _check_inputs(self) -> None:
        if (
            self.crew.events.nats_url is None
            and parse_quantity(self.k8s.nats_storage) < self.crew.events.max_bytes * 1.25
        ):
            # JetStream needs headroom above the stream cap for its index and compaction.
            self.warnings.append(
                f"kubernetes.nats_storage ({self.k8s.nats_storage}) leaves less than 25% headroom "
                "above events.max_bytes; the stream may fill the volume"
            )
        if not image_is_pinned(self.k8s.image):
            self.warnings.append(
                f"kubernetes.image ({self.k8s.image}) names no version: a re-render changes nothing, so pods "
                "roll to a new image only when they restart, and each pulls whatever the tag is then; "
                "pin a version tag or digest"
            )
        # Checked by the loader too; a crew made in code reaches here without it.
        if problems := kubernetes_problems(self.crew):
            loc, message = problems[0]
            raise UsageError(f"crew.yaml: {format_loc(loc)}: {message}")
        if not self.k8s.transparent_egress and any(agent.kubernetes is not None for agent in self.crew.agents):
            self.warnings.append(
                "agents[].kubernetes is set but kubernetes.transparent_egress is off: "
                "no agent's own firewall Service is rendered"
            )
        if self.k8s.agent_role and self.k8s.agent_role_access == "read-write":
            self.warnings.append(
                "kubernetes.agent_role_access is read-write: an agent may create pods that mount any Secret "
                f"of namespace {self.ns} (the firewall's, other agents' proxy passwords), and change the "
                "firewall's ConfigMap and Services; give it only where that is no more than the agent may have"
            )
        for i, rule in enumerate(self.crew.egress.secrets):
            if rule.source.file is not None and not rule.source.file.startswith("/"):
                raise UsageError(
                    f"crew.yaml: egress.secrets[{i}].source.file: in Kubernetes a secret file needs an absolute path"
                )
        check_fits_a_configmap(self.files)

    # -- the crew directory as a ConfigMap --------------------------------------------------

    def _crew_config(self) -> Manifest:
        data: dict[str, str] = {}
        binary: dict[str, str] = {}
        for path in sorted(self.files):
            key = config_key(path)
            if not _CONFIG_KEY.fullmatch(key) or len(key) > 253:
                raise UsageError(f"{path}: a crew file name may use only letters, digits, '-', '_' and '.'")
            if key in data or key in binary:
                raise UsageError(f"{path}: its ConfigMap key {key!r} collides with another file's")
            content = self.files[path]
            if isinstance(content, str):
                data[key] = content
            else:
                # `data` holds UTF-8 text only; the kubelet writes a binaryData value's bytes as they were.
                binary[key] = base64.b64encode(content).decode("ascii")
        config: Manifest = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.meta(CREW_CONFIG, "crew"),
            "data": data,
        }
        if binary:
            config["binaryData"] = binary
        return config

    def _crew_volume(self) -> Manifest:
        items = [{"key": config_key(path), "path": path} for path in sorted(self.files)]
        return {"name": "crew", "configMap": {"name": CREW_CONFIG, "items": items, "defaultMode": 0o444}}

    # -- the firewall ----------------------------------------------------------------------

    def _firewall_secrets(self) -> list[Manifest]:
        self.external.append(
            ExternalSecretRef(FIREWALL_CA_SECRET, ("tls.crt", "tls.key"), "the firewall's CA (agents get tls.crt only)")
        )
        self.external.append(
            ExternalSecretRef(
                FIREWALL_IDENTITY_SECRET, ("identity.key",), "the key agents' proxy passwords derive from"
            )
        )
        rules = self.crew.egress.secrets
        if not rules:
            return []
        keys = tuple(rule.name for rule in rules)
        if not self.k8s.external_secrets:
            self.external.append(ExternalSecretRef(FIREWALL_SECRETS, keys, "the real secrets the firewall swaps in"))
            return []
        return [
            {
                "apiVersion": "external-secrets.io/v1",
                "kind": "ExternalSecret",
                "metadata": self.meta(FIREWALL_SECRETS, "firewall"),
                "spec": {
                    "refreshInterval": "1h",
                    "secretStoreRef": {"kind": "ClusterSecretStore", "name": self.k8s.secret_store},
                    "target": {"name": FIREWALL_SECRETS, "creationPolicy": "Owner"},
                    "data": [
                        {"secretKey": rule.name, "remoteRef": {"key": f"{self.instance}/{rule.name}"}} for rule in rules
                    ],
                },
            }
        ]

    def _nats_url(self) -> str:
        return self.crew.events.nats_url or f"nats://{NATS}.{self.ns}.svc:{NATS_PORT}"

    def _firewall(self) -> list[Manifest]:
        selector = self.selector("firewall")
        state = firewall_state(self.crew)
        env = [
            _env("AGENT_SMITH_CREW", CREW_MOUNT),
            _env("AGENT_SMITH_RUNTIME__STATE_DIR", STATE_DIR),
            _env("AGENT_SMITH_EGRESS__LISTEN", f"0.0.0.0:{self.proxy_port}"),
            _env("HOME", STATE_DIR),
            _env("NATS_URL", self._nats_url()),
        ]
        if self.transparent_port is not None:
            env.append(_env("AGENT_SMITH_EGRESS__TRANSPARENT_LISTEN", f"0.0.0.0:{self.transparent_port}"))
        mounts: list[Manifest] = [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "crew", "mountPath": CREW_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ]
        file_items = []
        for rule in self.crew.egress.secrets:
            if rule.source.env is not None:
                env.append(_secret_env(rule.source.env, FIREWALL_SECRETS, rule.name))
            elif rule.source.file is not None:
                file_items.append({"key": rule.name, "path": rule.name})
                mounts.append(
                    {"name": "secret-files", "mountPath": rule.source.file, "subPath": rule.name, "readOnly": True}
                )
        ports = [{"name": "proxy", "containerPort": self.proxy_port, "protocol": "TCP"}]
        if self.transparent_port is not None:
            ports.append({"name": "transparent", "containerPort": self.transparent_port, "protocol": "TCP"})
        for own in self.own_listeners.values():
            port_name = agent_firewall_port_name(own.firewall_port)
            ports.append({"name": port_name, "containerPort": own.firewall_port, "protocol": "TCP"})
        volumes: list[Manifest] = [
            {"name": "state", "persistentVolumeClaim": {"claimName": f"{FIREWALL}-state"}},
            self._crew_volume(),
            {"name": "tmp", "emptyDir": {}},
            {
                "name": "bootstrap",
                "projected": {
                    "defaultMode": 0o400,
                    "sources": [
                        {"secret": {"name": FIREWALL_CA_SECRET, "items": [{"key": "tls.crt", "path": "ca.pem"}]}},
                        {"secret": {"name": FIREWALL_CA_SECRET, "items": [{"key": "tls.key", "path": "ca-key.pem"}]}},
                        {
                            "secret": {
                                "name": FIREWALL_IDENTITY_SECRET,
                                "items": [{"key": "identity.key", "path": "identity.key"}],
                            }
                        },
                    ],
                },
            },
        ]
        if file_items:
            volumes.append(
                {
                    "name": "secret-files",
                    "secret": {"secretName": FIREWALL_SECRETS, "items": file_items, "defaultMode": 0o400},
                }
            )
        # The Secrets are the source of truth; the state volume keeps what the firewall
        # writes itself (refreshed Claude tokens, the audit log), so copy them in each start.
        install = (
            f"install -d -m 700 {state} && "
            f"install -m 600 /bootstrap/identity.key {state}/identity.key && "
            f"install -m 600 /bootstrap/ca-key.pem {state}/ca-key.pem && "
            f"install -m 644 /bootstrap/ca.pem {state}/ca.pem"
        )
        pod = {
            "serviceAccountName": FIREWALL,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": _pod_security(),
            "initContainers": [
                {
                    "name": "install-keys",
                    "image": self.k8s.image,
                    "imagePullPolicy": pull_policy(self.k8s.image),
                    "command": ["/bin/sh", "-c", install],
                    "securityContext": _container_security(),
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                    },
                    "volumeMounts": [
                        {"name": "state", "mountPath": STATE_DIR},
                        {"name": "bootstrap", "mountPath": "/bootstrap", "readOnly": True},
                    ],
                }
            ],
            "containers": [
                {
                    "name": "firewall",
                    "image": self.k8s.image,
                    "imagePullPolicy": pull_policy(self.k8s.image),
                    "args": ["firewall", "--crew", CREW_MOUNT],
                    "env": env,
                    "ports": ports,
                    "readinessProbe": {"tcpSocket": {"port": "proxy"}, "periodSeconds": 5},
                    "livenessProbe": {"tcpSocket": {"port": "proxy"}, "periodSeconds": 20, "failureThreshold": 3},
                    "resources": {
                        "requests": {"cpu": "100m", "memory": "256Mi"},
                        "limits": {"cpu": "2", "memory": "1Gi"},
                    },
                    "securityContext": _container_security(),
                    "volumeMounts": mounts,
                }
            ],
            "volumes": volumes,
        }
        service_ports = [{"name": "proxy", "port": self.proxy_port, "targetPort": "proxy", "protocol": "TCP"}]
        service_spec: Manifest = {"type": "ClusterIP", "selector": selector, "ports": service_ports}
        if self.transparent_port is not None:
            service_ports.append({"name": "https", "port": 443, "targetPort": "transparent", "protocol": "TCP"})
        if self.k8s.transparent_egress:
            service_spec["clusterIP"] = self.k8s.firewall_cluster_ip
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self.meta(FIREWALL, "firewall"),
                "automountServiceAccountToken": False,
            },
            self._pvc(f"{FIREWALL}-state", "firewall", "1Gi"),
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": self.meta(FIREWALL, "firewall"),
                "spec": {
                    "replicas": 1,
                    # One writer on a ReadWriteOnce volume: the old pod goes before the new one starts.
                    "strategy": {"type": "Recreate"},
                    "selector": {"matchLabels": selector},
                    "template": {
                        "metadata": {
                            "labels": self.labels("firewall"),
                            "annotations": {CONFIG_HASH: self._firewall_hash()},
                        },
                        "spec": pod,
                    },
                },
            },
            {"apiVersion": "v1", "kind": "Service", "metadata": self.meta(FIREWALL, "firewall"), "spec": service_spec},
            *(self._agent_firewall_service(agent, own) for agent, own in self.own_listeners.items()),
            self._firewall_policy(),
        ]

    def _firewall_hash(self) -> str:
        # The firewall reads crew.yaml alone (which the loader took as UTF-8 text); no persona file.
        crew_yaml = file_bytes(self.files.get("crew.yaml", "")).decode(errors="replace")
        return _config_hash({"crew.yaml": crew_yaml})

    def _agent_firewall_service(self, agent: str, own: AgentKubernetes) -> Manifest:
        """The address only `agent`'s host names point at; it reaches that agent's listener on the firewall."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.meta(agent_firewall_name(agent), "firewall", agent),
            "spec": {
                "type": "ClusterIP",
                "clusterIP": own.firewall_cluster_ip,
                "selector": self.selector("firewall"),
                "ports": [
                    {
                        "name": "https",
                        "port": 443,
                        "targetPort": agent_firewall_port_name(own.firewall_port),
                        "protocol": "TCP",
                    }
                ],
            },
        }

    def _firewall_ports(self) -> list[int]:
        ports = {443, url_endpoint(self.crew.forge.base_url, {"https": 443, "http": 80})[1]}
        for rule in self.crew.egress.allow:
            ports.update(rule.ports)
        for agent in self.crew.agents:
            for rule in agent.egress.allow:
                ports.update(rule.ports)
        return sorted(ports)

    def _allows_private(self) -> bool:
        rules = list(self.crew.egress.allow) + [r for a in self.crew.agents for r in a.egress.allow]
        return any(rule.allow_private for rule in rules)

    def _firewall_policy(self) -> Manifest:
        ingress_ports = [{"protocol": "TCP", "port": self.proxy_port}]
        if self.transparent_port is not None:
            ingress_ports.append({"protocol": "TCP", "port": self.transparent_port})
        internet_v4: Manifest = {"cidr": "0.0.0.0/0"}
        internet_v6: Manifest = {"cidr": "::/0"}
        if not self._allows_private():
            # Defence in depth: the firewall refuses private destinations itself, and
            # the network refuses them too unless a rule explicitly allows one.
            internet_v4["except"] = list(_PRIVATE_V4)
            internet_v6["except"] = list(_PRIVATE_V6)
        egress = [
            self._dns_egress(),
            {
                "to": [{"ipBlock": internet_v4}, {"ipBlock": internet_v6}],
                "ports": [{"protocol": "TCP", "port": p} for p in self._firewall_ports()],
            },
            self._nats_egress(),
        ]
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.meta(FIREWALL, "firewall"),
            "spec": {
                "podSelector": {"matchLabels": self.selector("firewall")},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": self._any_agent()}}], "ports": ingress_ports},
                    # An agent's own listener names it, so only that agent's pods may reach it. The policy
                    # sees the pod after the Service's DNAT: pod labels and the target port.
                    *(
                        {
                            "from": [{"podSelector": {"matchLabels": self.selector("agent", agent)}}],
                            "ports": [{"protocol": "TCP", "port": own.firewall_port}],
                        }
                        for agent, own in self.own_listeners.items()
                    ),
                ],
                "egress": egress,
            },
        }

    def _any_agent(self) -> dict[str, str]:
        return self.selector("agent")

    def _dns_egress(self) -> Manifest:
        """The NetworkPolicy egress rule to the cluster's DNS: kube-dns, or `kubernetes.dns_peer`."""
        peer = self.k8s.dns_peer
        if peer is None:
            return {"to": [copy.deepcopy(_DNS)], "ports": copy.deepcopy(_DNS_PORTS)}
        port = 53 if peer.port is None else peer.port
        return {"to": [_peer_to(peer)], "ports": [{"protocol": p, "port": port} for p in ("UDP", "TCP")]}

    def _nats_egress(self) -> Manifest:
        if self.crew.events.nats_url is None:
            return {
                "to": [{"podSelector": {"matchLabels": self.selector("nats")}}],
                "ports": [{"protocol": "TCP", "port": NATS_PORT}],
            }
        # Every server of the list: the client connects to any of them.
        servers = [url_endpoint(url, _NATS_PORTS) for url in nats_servers(self.crew.events.nats_url)]
        ports = [{"protocol": "TCP", "port": port} for port in sorted({port for _, port in servers})]
        if self.k8s.nats_peer is not None:
            return {"to": [_peer_to(self.k8s.nats_peer)], "ports": _peer_ports(self.k8s.nats_peer, ports)}
        to: list[Manifest] = []
        for host, _ in servers:
            if (namespace := in_cluster_namespace(host, self.ns)) is None:
                # NATS is not HTTP, so it cannot go through the firewall: the network must allow it by address.
                raise UsageError(
                    f"crew.yaml: events.nats_url: {host} is not an in-cluster Service; "
                    "set kubernetes.nats_peer (its cidr, or namespace and pod_labels)"
                )
            selector = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
            if selector not in to:
                to.append(selector)
        return {"to": to, "ports": ports}

    def _matrix_to(self, host: str) -> Manifest | None:
        url_key, peer_key = "matrix.homeserver", "kubernetes.matrix_peer"
        if self.k8s.matrix_peer is not None:
            return _peer_to(self.k8s.matrix_peer)
        namespace = in_cluster_namespace(host, self.ns)
        if namespace is not None:
            return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
        if host in ("localhost", "::1") or host.startswith("127."):
            self.warnings.append(
                f"{url_key} points at loopback ({host}), which inside a pod is the pod itself; "
                "override it or set it to an in-cluster Service"
            )
            return None
        # The channel connects to the homeserver itself, not through the firewall (as NATS does): the
        # network must allow it by address, or the agents' chat would be dead on arrival.
        raise UsageError(
            f"crew.yaml: {url_key}: {host} is outside the cluster; set {peer_key} (its cidr, or namespace "
            "and pod_labels) so the agents' NetworkPolicy lets them reach it"
        )

    # -- NATS ------------------------------------------------------------------------------

    def _nats(self) -> list[Manifest]:
        selector = self.selector("nats")
        container = {
            "name": "nats",
            "image": self.k8s.nats_image,
            "imagePullPolicy": pull_policy(self.k8s.nats_image),
            "args": [
                "--jetstream",
                "--store_dir",
                "/data",
                "--port",
                str(NATS_PORT),
                "--http_port",
                str(NATS_MONITOR_PORT),
            ],
            "ports": [
                {"name": "client", "containerPort": NATS_PORT, "protocol": "TCP"},
                {"name": "monitor", "containerPort": NATS_MONITOR_PORT, "protocol": "TCP"},
            ],
            "readinessProbe": {"httpGet": {"path": "/healthz?js-enabled-only=true", "port": "monitor"}},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "monitor"}, "periodSeconds": 20},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": _container_security(),
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
        statefulset = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.meta(NATS, "nats"),
            "spec": {
                "serviceName": NATS_HEADLESS,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": self.labels("nats")},
                    "spec": {
                        "serviceAccountName": NATS,
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": _pod_security(),
                        "containers": [container],
                    },
                },
                "volumeClaimTemplates": [self._claim_template("data", self.k8s.nats_storage)],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            },
        }
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.meta(NATS, "nats"),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [
                            {"podSelector": {"matchLabels": self._any_agent()}},
                            {"podSelector": {"matchLabels": self.selector("firewall")}},
                        ],
                        "ports": [{"protocol": "TCP", "port": NATS_PORT}],
                    }
                ],
                "egress": [],
            },
        }
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self.meta(NATS, "nats"),
                "automountServiceAccountToken": False,
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.meta(NATS, "nats"),
                "spec": {
                    "type": "ClusterIP",
                    "selector": selector,
                    "ports": [{"name": "client", "port": NATS_PORT, "targetPort": "client", "protocol": "TCP"}],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.meta(NATS_HEADLESS, "nats"),
                "spec": {
                    "clusterIP": "None",
                    "selector": selector,
                    "ports": [{"name": "client", "port": NATS_PORT, "targetPort": "client", "protocol": "TCP"}],
                },
            },
            statefulset,
            policy,
        ]

    # -- agents ------------------------------------------------------------------------------

    def _pvc(self, name: str, component: str, size: str) -> Manifest:
        spec: Manifest = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
        if self.k8s.storage_class is not None:
            spec["storageClassName"] = self.k8s.storage_class
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self.meta(name, component),
            "spec": spec,
        }

    def _claim_template(self, name: str, size: str) -> Manifest:
        spec: Manifest = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
        if self.k8s.storage_class is not None:
            spec["storageClassName"] = self.k8s.storage_class
        return {"metadata": {"name": name}, "spec": spec}

    def _transparent_hosts(self, agent: Agent) -> list[str]:
        crew = self.crew
        names = [rule.host for rule in crew.egress.allow] + [rule.host for rule in agent.egress.allow]
        names += [h for rule in crew.egress.secrets for h in rule.hosts]
        if crew.egress.claude_login.enabled:
            names += crew.egress.claude_login.api_hosts
        names.append(crew.forge.host.split(":")[0])
        # Host names are case-insensitive (the firewall compares them in lower case); hostAliases
        # takes only lower-case DNS names. IP literals need no name; the chart applies the same
        # tests (it has no IP parser).
        names = [n.lower() for n in names if not _IP_LITERAL.fullmatch(n) and ":" not in n]
        exact = sorted({n for n in names if DNS_SUBDOMAIN.fullmatch(n) and len(n) <= 253})
        unaliased = sorted(set(names) - set(exact))
        if unaliased:
            self.warnings.append(
                f"transparent egress: {agent.name} cannot alias wildcard or malformed hosts "
                f"({', '.join(unaliased)}); those are reachable through HTTPS_PROXY only"
            )
        return exact

    def _agent_env(self, agent: Agent) -> list[Manifest]:
        crew = self.crew
        no_proxy = ["localhost", "127.0.0.1", "::1", ".svc", ".cluster.local"]
        env = [
            _env("AGENT_NAME", agent.name),
            _env("AGENT_SMITH_CREW", CREW_MOUNT),
            _env("AGENT_SMITH_RUNTIME__STATE_DIR", STATE_DIR),
            _env("AGENT_SMITH_RUNTIME__METRICS_LISTEN", f"0.0.0.0:{METRICS_PORT}"),
            _env("HOME", agent_home(crew, agent.name)),
            _env("NATS_URL", self._nats_url()),
            _env("AGENT_SMITH_CA_CERT", CA_FILE),
            _env("GITHUB_TOKEN", crew.forge.token_placeholder),
            _secret_env("AGENT_SMITH_PROXY_PASSWORD", proxy_secret_name(agent.name), "password"),
        ]
        # $(VAR) expands variables defined earlier in this list, so the password stays in its Secret.
        proxy = f"http://$(AGENT_NAME):$(AGENT_SMITH_PROXY_PASSWORD)@{self.firewall_host}:{self.proxy_port}"
        env += [_env("HTTPS_PROXY", proxy), _env("HTTP_PROXY", proxy), _env("NO_PROXY", ",".join(no_proxy))]
        if crew.matrix is not None and agent.matrix is not None:
            env.append(_env("MATRIX_HOMESERVER_URL", crew.matrix.homeserver))
            env.append(_env("MATRIX_BOT_USER_ID", agent.matrix.user_id))
            env.append(_secret_env("MATRIX_ACCESS_TOKEN", matrix_secret_name(agent.name), "access_token"))
        taken = {item["name"] for item in env}
        # The kubelet reads `$(NAME)` and `$$` in a value; crew.yaml's values are literal, as in local mode.
        env += [_env(key, value.replace("$", "$$")) for key, value in sorted(agent.env.items()) if key not in taken]
        return env

    def _agent_egress(self, agent: Agent) -> list[Manifest]:
        ports = [{"protocol": "TCP", "port": self.proxy_port}]
        if self.transparent_port is not None:
            ports.append({"protocol": "TCP", "port": self.transparent_port})
        if (own := self.own_listeners.get(agent.name)) is not None:
            ports.append({"protocol": "TCP", "port": own.firewall_port})
        egress = [
            {"to": [{"podSelector": {"matchLabels": self.selector("firewall")}}], "ports": ports},
            self._dns_egress(),
        ]
        egress.append(self._nats_egress())
        if self.crew.matrix is not None and agent.matrix is not None:
            host, port = url_endpoint(self.crew.matrix.homeserver, {"https": 443, "http": 80})
            to = self._matrix_to(host)
            if to is not None:
                ports = [{"protocol": "TCP", "port": port}]
                peer = self.k8s.matrix_peer
                egress.append({"to": [to], "ports": ports if peer is None else _peer_ports(peer, ports)})
        if self.k8s.agent_role and self.k8s.api_server is not None:
            egress.append(
                {
                    "to": [_peer_to(self.k8s.api_server)],
                    "ports": _peer_ports(
                        self.k8s.api_server, [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]
                    ),
                }
            )
        return egress

    def _agent_rbac(self, agent: Agent) -> list[Manifest]:
        if not self.k8s.agent_role:
            return []
        name = agent_object_name(agent.name)
        verbs = ["get", "list", "watch"]
        if self.k8s.agent_role_access == "read-write":
            verbs += ["create", "update", "patch", "delete"]
        return [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": self.meta(name, "agent", agent.name),
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "pods/log", "services", "endpoints", "configmaps", "events"],
                        "verbs": verbs,
                    },
                    {
                        "apiGroups": ["apps", "batch"],
                        "resources": ["deployments", "statefulsets", "replicasets", "jobs", "cronjobs"],
                        "verbs": verbs,
                    },
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": self.meta(name, "agent", agent.name),
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": self.ns}],
            },
        ]

    def _make_dirs(self, paths: Sequence[str], mount: Manifest) -> Manifest:
        """An init container that makes `paths` in `mount`'s volume as the pod's user.

        A volume mounted inside another (the workspace inside the home volume) needs a
        directory there; a container runtime makes a missing one as root, mode 0755
        (kubernetes/kubernetes#81676), and the agent could then create nothing beside it:
        not its home, not the crew's state. Made here first, they are the agent's own.
        """
        return {
            "name": "make-dirs",
            "image": self.k8s.image,
            "imagePullPolicy": pull_policy(self.k8s.image),
            "command": ["/bin/mkdir", "-p", *paths],
            "securityContext": _container_security(),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "volumeMounts": [mount],
        }

    def _agent(self, agent: Agent) -> list[Manifest]:
        crew = self.crew
        name = agent_object_name(agent.name)
        selector = self.selector("agent", agent.name)
        self.external.append(
            ExternalSecretRef(proxy_secret_name(agent.name), ("password",), f"{agent.name}'s proxy password")
        )
        if crew.matrix is not None and agent.matrix is not None:
            self.external.append(
                ExternalSecretRef(matrix_secret_name(agent.name), ("access_token",), f"{agent.name}'s Matrix token")
            )
        if self.k8s.agent_role and self.k8s.api_server is None:
            self.warnings.append(
                "kubernetes.agent_role is on but kubernetes.api_server is not set, "
                "so the agents' NetworkPolicy does not let them reach the API server"
            )
        res = agent.resources
        resources = {
            "requests": {"cpu": res.cpu_request, "memory": res.memory_request},
            "limits": {"cpu": res.cpu_limit, "memory": res.memory_limit},
        }
        env = self._agent_env(agent)
        mounts = [
            {"name": "home", "mountPath": STATE_DIR},
            {"name": "workspace", "mountPath": agent_workspace(crew, agent.name)},
            {"name": "crew", "mountPath": CREW_MOUNT, "readOnly": True},
            {"name": "firewall-ca", "mountPath": CA_MOUNT, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ]

        def container(container_name: str, args: Sequence[str]) -> Manifest:
            return copy.deepcopy(
                {
                    "name": container_name,
                    "image": self.k8s.image,
                    "imagePullPolicy": pull_policy(self.k8s.image),
                    "args": list(args),
                    "env": env,
                    "resources": resources,
                    "securityContext": _container_security(),
                    "volumeMounts": mounts,
                }
            )

        pod: Manifest = {
            "serviceAccountName": name,
            "automountServiceAccountToken": self.k8s.agent_role,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 60,
            "securityContext": _pod_security(),
            "initContainers": [
                self._make_dirs(
                    [agent_home(crew, agent.name), agent_workspace(crew, agent.name)],
                    {"name": "home", "mountPath": STATE_DIR},
                ),
                container("assemble", ["assemble", agent.name]),
            ],
            "containers": [
                {
                    **container("agent", ["run"]),
                    "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
                    # The supervisor's /healthz answers while it runs; `run` may clone on its
                    # first start, so the startup probe allows ten minutes.
                    "startupProbe": {
                        "httpGet": {"path": "/healthz", "port": "metrics"},
                        "periodSeconds": 5,
                        "failureThreshold": 120,
                    },
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "metrics"},
                        "periodSeconds": 30,
                        "failureThreshold": 3,
                    },
                    # Ready while claude serves: a crash loop shows as NotReady, and halts a rollout.
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10},
                }
            ],
            "volumes": [
                self._crew_volume(),
                {
                    "name": "firewall-ca",
                    "secret": {
                        "secretName": FIREWALL_CA_SECRET,
                        "items": [{"key": "tls.crt", "path": "ca.pem"}],
                        "defaultMode": 0o444,
                    },
                },
                {"name": "tmp", "emptyDir": {}},
            ],
        }
        if self.k8s.transparent_egress and self.k8s.firewall_cluster_ip is not None:
            own = self.own_listeners.get(agent.name)
            address = own.firewall_cluster_ip if own is not None else self.k8s.firewall_cluster_ip
            pod["hostAliases"] = [{"ip": address, "hostnames": self._transparent_hosts(agent)}]
        statefulset = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": self.meta(name, "agent", agent.name),
            "spec": {
                "serviceName": name,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {
                        "labels": self.labels("agent", agent.name),
                        "annotations": {CONFIG_HASH: _config_hash(agent_inputs(self.crew, self.files, agent.name))},
                    },
                    "spec": pod,
                },
                "volumeClaimTemplates": [
                    self._claim_template("home", res.home_storage),
                    self._claim_template("workspace", res.workspace_storage),
                ],
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            },
        }
        return [
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": self.meta(name, "agent", agent.name),
                "automountServiceAccountToken": self.k8s.agent_role,
            },
            *self._agent_rbac(agent),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": self.meta(name, "agent", agent.name),
                "spec": {"clusterIP": "None", "selector": selector},
            },
            statefulset,
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": self.meta(name, "agent", agent.name),
                "spec": {
                    "podSelector": {"matchLabels": selector},
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [],
                    "egress": self._agent_egress(agent),
                },
            },
        ]
