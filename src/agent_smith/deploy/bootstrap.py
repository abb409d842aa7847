"""The Secrets a crew's deployment starts from: the firewall's CA and identity key, each agent's proxy password.

These are the only Secret objects agent-smith ever writes, and only to a
mode-600 file for `kubectl apply`: the render itself never holds a secret.
Agents' proxy passwords derive from the firewall's identity key, so the
firewall checks them without a list; each agent's pod reads only its own.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping

from agent_smith.crew import Crew
from agent_smith.deploy.render import (
    FIREWALL_CA_SECRET,
    FIREWALL_IDENTITY_SECRET,
    PART_OF,
    Manifest,
    proxy_secret_name,
)


def _b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def bootstrap_secrets(
    crew: Crew,
    namespace: str,
    *,
    identity_key: bytes,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    passwords: Mapping[str, str],
) -> list[Manifest]:
    """Secret manifests for the firewall's CA and identity key and every agent's proxy password."""

    def secret(name: str, component: str, data: Mapping[str, bytes | str], kind: str = "Opaque") -> Manifest:
        labels = {
            "app.kubernetes.io/name": PART_OF,
            "app.kubernetes.io/instance": crew.crew.name,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/managed-by": PART_OF,
        }
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "type": kind,
            "data": {key: _b64(value) for key, value in data.items()},
        }

    out = [
        secret(FIREWALL_CA_SECRET, "firewall", {"tls.crt": ca_cert_pem, "tls.key": ca_key_pem}, "kubernetes.io/tls"),
        secret(FIREWALL_IDENTITY_SECRET, "firewall", {"identity.key": identity_key}),
    ]
    out += [secret(proxy_secret_name(a.name), "agent", {"password": passwords[a.name]}) for a in crew.agents]
    return out
