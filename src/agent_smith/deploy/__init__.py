"""Kubernetes deployment of a crew: manifests, checks, strict validation, the Helm chart's values.

rendered = render_crew(crew, files)                  # pure: crew → manifest dicts
check_manifests(rendered.manifests, rendered.external)  # [] when every promise holds
validate_strict(rendered.manifests)                   # [] against Kubernetes 1.30–1.37
write_manifests(rendered.manifests, Path("k8s"))      # one file per object + kustomization
"""

from agent_smith.deploy.check import check_manifests
from agent_smith.deploy.files import crew_files
from agent_smith.deploy.render import ExternalSecretRef, Manifest, Rendered, render_crew
from agent_smith.deploy.validate import VERSIONS, SchemaProblem, validate_strict
from agent_smith.deploy.writer import to_yaml_stream, write_manifests

__all__ = [
    "VERSIONS",
    "ExternalSecretRef",
    "Manifest",
    "Rendered",
    "SchemaProblem",
    "check_manifests",
    "crew_files",
    "render_crew",
    "to_yaml_stream",
    "validate_strict",
    "write_manifests",
]
