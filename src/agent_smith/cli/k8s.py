"""`agent-smith k8s …`: the crew as Kubernetes manifests, Helm values, and the bootstrap Secrets."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer

from agent_smith.cli.context import CrewOption, app_context
from agent_smith.cli.output import AppContext
from agent_smith.crew import NAMESPACE_PATTERN, CrewPaths, LoadedCrew, load_crew
from agent_smith.deploy import check_manifests, crew_files, render_crew, to_yaml_stream, write_manifests
from agent_smith.deploy.bootstrap import bootstrap_secrets
from agent_smith.deploy.chart import chart_values
from agent_smith.deploy.render import FileContent, Rendered
from agent_smith.deploy.writer import to_yaml
from agent_smith.egress import FirewallState, proxy_url_for
from agent_smith.errors import OperationError, UsageError
from agent_smith.fsutil import write_atomic
from agent_smith.logs import LogFormat

SECRETS_MARKER = (
    "# Written by agent-smith k8s secrets. SECRET VALUES: keep this file private; apply it, then delete it.\n"
)

k8s_app = typer.Typer(
    name="k8s",
    help="Deploy the crew to Kubernetes: manifests, Helm values, bootstrap Secrets.",
    no_args_is_help=True,
)


def _namespace(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(NAMESPACE_PATTERN, value):
        raise typer.BadParameter(f"{value!r} is no namespace (a DNS label: a-z, 0-9 and -, at most 63)")
    return value


NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        metavar="NAME",
        callback=_namespace,
        help="Namespace of every object (default: kubernetes.namespace).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")]


def _load(crew_dir: Path | None) -> tuple[LoadedCrew, dict[str, FileContent]]:
    # Section overrides (AGENT_SMITH_KUBERNETES__IMAGE=…) apply, so CI can pin an image;
    # the container contract (AGENT_NAME, NATS_URL, …) of the operator's own shell must not.
    env = {k: v for k, v in os.environ.items() if k.startswith("AGENT_SMITH_") and "__" in k}
    loaded = load_crew(crew_dir, env=env)
    return loaded, crew_files(loaded)


def _report(out: AppContext, rendered: Rendered) -> None:
    for warning in rendered.warnings:
        out.warn(warning)
    if rendered.external and out.log_format is LogFormat.json:
        for ref in rendered.external:
            out.log(
                logging.WARNING,
                f"create Secret {ref.name} before the pods can start (see docs/kubernetes.md): {ref.purpose}",
                secret=ref.name,
                keys=list(ref.keys),
            )
    elif rendered.external:
        out.err.print("Create these Secrets before the pods can start (see docs/kubernetes.md):", highlight=False)
        for ref in rendered.external:
            line = f"  {ref.name} [{', '.join(ref.keys)}]: {ref.purpose}"
            out.err.print(line, highlight=False, soft_wrap=True, markup=False)


def render(
    ctx: typer.Context,
    crew: CrewOption = None,
    namespace: NamespaceOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="DIR", help="Write one file per object and a kustomization.yaml into DIR."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Render the crew as Kubernetes manifests (to stdout as YAML, or into a directory)."""
    out = app_context(ctx)
    loaded, files = _load(crew)
    rendered = render_crew(loaded.crew, files, namespace=namespace)
    secret_env = {r.source.env for r in loaded.crew.egress.secrets if r.source.env is not None}
    # The same promises the tests hold the render to; here they catch what the crew's own
    # files carry, such as a real token pasted into a persona's CLAUDE.md.
    problems = check_manifests(rendered.manifests, rendered.external, secret_env=secret_env)
    if problems:
        raise UsageError("the rendered manifests break a promise: " + "; ".join(problems[:5]))
    written = write_manifests(rendered.manifests, output) if output is not None else []
    if as_json:
        out.print_json(
            {
                "namespace": rendered.namespace,
                "objects": [{"kind": m["kind"], "name": m["metadata"]["name"]} for m in rendered.manifests],
                "files": [str(p) for p in written],
                "external_secrets": [
                    {"name": r.name, "keys": list(r.keys), "purpose": r.purpose} for r in rendered.external
                ],
                "warnings": list(rendered.warnings),
            }
        )
        return
    _report(out, rendered)
    if output is None:
        out.console.file.write(to_yaml_stream(rendered.manifests))
    else:
        out.console.print(f"Wrote {len(rendered.manifests)} objects to {output} (kubectl apply -k {output}).")


def values(
    ctx: typer.Context,
    crew: CrewOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print the crew as values for the Helm chart (charts/agent-smith): crew.yaml plus its files."""
    out = app_context(ctx)
    loaded, files = _load(crew)
    text = to_yaml(chart_values(loaded.crew, files))
    if output is None:
        out.console.file.write(text)
    else:
        try:
            write_atomic(output, text)
        except OSError as exc:
            raise OperationError(f"{output}: cannot write: {exc.strerror}") from exc
        out.console.print(f"Wrote the Helm values of crew {loaded.crew.crew.name!r} to {output}.")


def secrets(
    ctx: typer.Context,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="DIR", help="Write DIR/bootstrap-secrets.yaml (mode 600) here.")
    ],
    crew: CrewOption = None,
    namespace: NamespaceOption = None,
    state_dir: Annotated[
        Path | None,
        typer.Option(
            "--state-dir",
            metavar="DIR",
            help="Take the CA and identity key from this firewall state root (default: runtime.state_dir).",
        ),
    ] = None,
) -> None:
    """Write the firewall's CA, its identity key and each agent's proxy password as Secrets; print no value."""
    out = app_context(ctx)
    loaded, _ = _load(crew)
    model = loaded.crew
    if state_dir is not None:
        model = model.model_copy(update={"runtime": model.runtime.model_copy(update={"state_dir": str(state_dir)})})
    state = FirewallState(CrewPaths.of(model).firewall)
    ca = state.ca()
    passwords = {}
    for agent in model.agents:
        password = urlsplit(proxy_url_for(model, agent.name)).password
        if not password:
            raise OperationError(f"the firewall gave no proxy password for {agent.name}")
        passwords[agent.name] = password
    manifests = bootstrap_secrets(
        model,
        namespace or model.kubernetes.namespace,
        identity_key=state.identity_key(),
        ca_cert_pem=ca.cert_pem,
        ca_key_pem=ca.key_pem,
        passwords=passwords,
    )
    if output.exists() and not output.is_dir():
        raise UsageError(f"{output}: exists and is not a directory")
    target = output / "bootstrap-secrets.yaml"
    try:
        write_atomic(target, to_yaml_stream(manifests, marker=SECRETS_MARKER), mode=0o600)
    except OSError as exc:
        raise OperationError(f"{target}: cannot write: {exc.strerror}") from exc
    names = ", ".join(m["metadata"]["name"] for m in manifests)
    out.console.print(f"Wrote {len(manifests)} Secrets to {target} (mode 600): {names}.", soft_wrap=True)
    out.console.print(f"The firewall's state is {state.root}; keep it, or the agents' passwords change.")


def register(app: typer.Typer) -> None:
    k8s_app.command("render")(render)
    k8s_app.command("values")(values)
    k8s_app.command("secrets")(secrets)
    app.add_typer(k8s_app)
