"""Semantic checks over rendered manifests, beyond what the API schemas can say.

Pure: a list of manifests (and the Secrets declared external) in, a list of
problems out. The render is checked with these in the tests, and so is the
Helm chart's output, so both are held to the same promises:

- every selector selects something, every workload's selector matches its own pods,
  every named Service targetPort is a port of the pods it selects, and every
  StatefulSet's serviceName is a headless Service that selects its pods;
- every referenced ServiceAccount, ConfigMap (and key), Secret (and key), PVC,
  Service and Role exists in the render or is declared external;
- no secret value is inline: no Secret object, no credential-shaped value
  anywhere, and a secret-named variable only through ``secretKeyRef``;
- every hostAliases name is one the API server accepts;
- every container runs as non-root, read-only root, no privilege escalation,
  with requests and limits; every pod is covered by a NetworkPolicy with both
  directions; no Role touches Secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from agent_smith.crew import find_credentials
from agent_smith.deploy.render import DNS_SUBDOMAIN, ExternalSecretRef, Manifest

# The container contract's secret-bearing variables; GITHUB_TOKEN is not one: agents hold its placeholder.
SECRET_ENV = frozenset({"MATRIX_ACCESS_TOKEN", "AGENT_SMITH_PROXY_PASSWORD"})
_WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _name(obj: Manifest) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def _pod_template(obj: Manifest) -> Manifest | None:
    if obj.get("kind") in _WORKLOADS:
        template = obj.get("spec", {}).get("template")
        return template if isinstance(template, dict) else None
    return None


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def _containers(pod_spec: Manifest) -> Iterator[Manifest]:
    yield from pod_spec.get("initContainers", []) or []
    yield from pod_spec.get("containers", []) or []


def check_manifests(
    manifests: Sequence[Manifest],
    external: Iterable[ExternalSecretRef] = (),
    *,
    secret_env: Iterable[str] = (),
) -> list[str]:
    """Every problem found in `manifests`; empty when they keep all the promises above.

    `secret_env` names environment variables that carry secrets (besides the
    container contract's own) and so may only come from a ``secretKeyRef``.
    """
    return _Checker(manifests, external, set(SECRET_ENV) | set(secret_env)).run()


class _Checker:
    def __init__(self, manifests: Sequence[Manifest], external: Iterable[ExternalSecretRef], secret_env: set[str]):
        self.manifests = list(manifests)
        self.secret_env = secret_env
        self.problems: list[str] = []
        self.by_kind: dict[str, dict[str, Manifest]] = {}
        for obj in self.manifests:
            self.by_kind.setdefault(str(obj.get("kind")), {})[obj.get("metadata", {}).get("name", "")] = obj
        self.secret_keys: dict[str, set[str] | None] = {ref.name: set(ref.keys) for ref in external}
        for obj in self.by_kind.get("ExternalSecret", {}).values():
            target = obj["spec"]["target"]["name"]
            self.secret_keys[target] = {item["secretKey"] for item in obj["spec"].get("data", [])}
        self.pods = [(obj, template) for obj in self.manifests if (template := _pod_template(obj)) is not None]

    def add(self, obj: Manifest, message: str) -> None:
        self.problems.append(f"{_name(obj)}: {message}")

    def run(self) -> list[str]:
        self._unique_and_one_namespace()
        for obj in self.manifests:
            self._no_inline_secret(obj)
            kind = obj.get("kind")
            if kind == "Service":
                self._service(obj)
            elif kind == "NetworkPolicy":
                self._network_policy(obj)
            elif kind == "RoleBinding":
                self._role_binding(obj)
            elif kind == "Role":
                self._role(obj)
        for obj, template in self.pods:
            self._workload(obj, template)
        return self.problems

    def _unique_and_one_namespace(self) -> None:
        seen: set[tuple[str, str]] = set()
        namespaces = {obj.get("metadata", {}).get("namespace") for obj in self.manifests}
        if len(namespaces) > 1:
            self.problems.append(f"objects span several namespaces: {sorted(str(n) for n in namespaces)}")
        for obj in self.manifests:
            key = (str(obj.get("kind")), str(obj.get("metadata", {}).get("name")))
            if key in seen:
                self.add(obj, "rendered twice")
            seen.add(key)

    # -- secrets --------------------------------------------------------------------------

    def _no_inline_secret(self, obj: Manifest) -> None:
        if obj.get("kind") == "Secret":
            self.add(obj, "a Secret with its values is in the render; secrets must be created outside it")
        for path, kind in find_credentials(obj):
            self.add(obj, f"{'.'.join(str(p) for p in path)} looks like {kind} (value not shown)")
        template = _pod_template(obj)
        if template is None:
            return
        for container in _containers(template.get("spec", {})):
            for var in container.get("env", []) or []:
                if "valueFrom" not in var and var["name"] in self.secret_env:
                    self.add(obj, f"container {container['name']}: {var['name']} is inline; use secretKeyRef")

    def _secret_ref(self, obj: Manifest, name: str, keys: Iterable[str]) -> None:
        if name not in self.secret_keys:
            self.add(obj, f"Secret {name} is neither rendered nor declared external")
            return
        known = self.secret_keys[name]
        for key in keys:
            if known is not None and key not in known:
                self.add(obj, f"Secret {name} has no key {key!r}")

    # -- workloads ------------------------------------------------------------------------

    def _workload(self, obj: Manifest, template: Manifest) -> None:
        spec = obj["spec"]
        labels = template.get("metadata", {}).get("labels", {})
        selector = spec.get("selector", {}).get("matchLabels", {})
        if not selector or not _matches(selector, labels):
            self.add(obj, "its selector does not match its pod template's labels")
        pod = template.get("spec", {})
        for alias in pod.get("hostAliases", []) or []:
            for hostname in alias.get("hostnames", []) or []:
                if len(hostname) > 253 or not DNS_SUBDOMAIN.fullmatch(hostname):
                    self.add(obj, f"hostAliases name {hostname!r} is no lower-case DNS name; the API server refuses it")
        if obj["kind"] == "StatefulSet":
            self._governing_service(obj, spec, labels)
        self._pod_references(obj, spec, pod)
        self._pod_hardening(obj, pod)
        policies = [
            p
            for p in self.by_kind.get("NetworkPolicy", {}).values()
            if _matches(p["spec"]["podSelector"].get("matchLabels", {}), labels)
        ]
        if not any({"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", [])) for p in policies):
            self.add(obj, "no NetworkPolicy restricts both its ingress and egress")

    def _governing_service(self, obj: Manifest, spec: Manifest, labels: Mapping[str, str]) -> None:
        """A StatefulSet's serviceName gives its pods their DNS names: the API wants a headless Service
        there, and one that selects the set's own pods (or their names resolve to nothing)."""
        name = spec.get("serviceName")
        service = self.by_kind.get("Service", {}).get(name or "")
        if service is None:
            self.add(obj, f"serviceName {name} is not rendered")
            return
        service_spec = service.get("spec", {})
        if service_spec.get("clusterIP") != "None":
            self.add(obj, f"serviceName {name} is not a headless Service (clusterIP: None)")
        selector = service_spec.get("selector")
        if not selector or not _matches(selector, labels):
            self.add(obj, f"serviceName {name} does not select the set's pods")

    def _pod_references(self, obj: Manifest, spec: Manifest, pod: Manifest) -> None:
        account = pod.get("serviceAccountName")
        if account is None or account not in self.by_kind.get("ServiceAccount", {}):
            self.add(obj, f"ServiceAccount {account} is not rendered")
        volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
        claims = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", []) or []}
        for volume in volumes.values():
            self._volume(obj, volume)
        for container in _containers(pod):
            for mount in container.get("volumeMounts", []) or []:
                if mount["name"] not in volumes and mount["name"] not in claims:
                    self.add(obj, f"container {container['name']} mounts unknown volume {mount['name']}")
            for var in container.get("env", []) or []:
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    self._secret_ref(obj, ref["name"], [ref["key"]])
                config_ref = var.get("valueFrom", {}).get("configMapKeyRef")
                if config_ref is not None:
                    self._config_ref(obj, config_ref["name"], [config_ref["key"]])

    def _config_ref(self, obj: Manifest, name: str, keys: Iterable[str]) -> None:
        config = self.by_kind.get("ConfigMap", {}).get(name)
        if config is None:
            self.add(obj, f"ConfigMap {name} is not rendered")
            return
        for key in keys:
            if key not in (config.get("data") or {}) and key not in (config.get("binaryData") or {}):
                self.add(obj, f"ConfigMap {name} has no key {key!r}")

    def _volume(self, obj: Manifest, volume: Manifest) -> None:
        if "configMap" in volume:
            source = volume["configMap"]
            self._config_ref(obj, source["name"], [i["key"] for i in source.get("items", [])])
        if "secret" in volume:
            source = volume["secret"]
            self._secret_ref(obj, source["secretName"], [i["key"] for i in source.get("items", [])])
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in self.by_kind.get("PersistentVolumeClaim", {}):
                self.add(obj, f"PersistentVolumeClaim {claim} is not rendered")
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                self._secret_ref(obj, source["secret"]["name"], [i["key"] for i in source["secret"].get("items", [])])
            if "configMap" in source:
                items = source["configMap"].get("items", [])
                self._config_ref(obj, source["configMap"]["name"], [i["key"] for i in items])

    def _pod_hardening(self, obj: Manifest, pod: Manifest) -> None:
        pod_security = pod.get("securityContext", {})
        for container in _containers(pod):
            security = container.get("securityContext", {})
            name = container["name"]
            if not (security.get("runAsNonRoot") or pod_security.get("runAsNonRoot")):
                self.add(obj, f"container {name} may run as root")
            if security.get("readOnlyRootFilesystem") is not True:
                self.add(obj, f"container {name} has a writable root filesystem")
            if security.get("allowPrivilegeEscalation") is not False:
                self.add(obj, f"container {name} allows privilege escalation")
            resources = container.get("resources", {})
            for side in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(side, {})):
                    self.add(obj, f"container {name} has no cpu and memory {side}")

    # -- services, policies, RBAC ----------------------------------------------------------

    def _selects_a_pod(self, selector: Mapping[str, str]) -> bool:
        return any(_matches(selector, t.get("metadata", {}).get("labels", {})) for _, t in self.pods)

    def _service(self, obj: Manifest) -> None:
        selector = obj.get("spec", {}).get("selector")
        if not selector or not self._selects_a_pod(selector):
            self.add(obj, "its selector matches no rendered pod")
            return
        named = {
            port.get("name")
            for _, template in self.pods
            if _matches(selector, template.get("metadata", {}).get("labels", {}))
            for container in template.get("spec", {}).get("containers", []) or []
            for port in container.get("ports", []) or []
        }
        for port in obj.get("spec", {}).get("ports", []) or []:
            target = port.get("targetPort")
            if isinstance(target, str) and target not in named:
                self.add(obj, f"targetPort {target} is no port of the pods it selects")

    def _network_policy(self, obj: Manifest) -> None:
        spec = obj["spec"]
        if not self._selects_a_pod(spec["podSelector"].get("matchLabels", {})):
            self.add(obj, "its podSelector matches no rendered pod")
        peers: list[Any] = []
        for rule in spec.get("ingress", []) or []:
            peers += rule.get("from", []) or []
        for rule in spec.get("egress", []) or []:
            peers += rule.get("to", []) or []
        for peer in peers:
            if "podSelector" in peer and "namespaceSelector" not in peer:
                labels = peer["podSelector"].get("matchLabels", {})
                if not self._selects_a_pod(labels):
                    self.add(obj, f"a peer selector {labels} matches no rendered pod")

    def _role(self, obj: Manifest) -> None:
        for rule in obj.get("rules", []):
            if any(r in ("secrets", "*") for r in rule.get("resources", [])):
                self.add(obj, "grants access to Secrets")

    def _role_binding(self, obj: Manifest) -> None:
        role = obj["roleRef"]["name"]
        if obj["roleRef"]["kind"] == "Role" and role not in self.by_kind.get("Role", {}):
            self.add(obj, f"Role {role} is not rendered")
        for subject in obj.get("subjects", []):
            if subject["kind"] == "ServiceAccount" and subject["name"] not in self.by_kind.get("ServiceAccount", {}):
                self.add(obj, f"ServiceAccount {subject['name']} is not rendered")
