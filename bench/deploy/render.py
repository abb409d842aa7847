"""Render + strict validation of a 50-agent crew: time (target < 5 s) and output size.

Side by side in one process, several rounds, medians printed:

    render             render_crew(): crew model + files → manifest dicts
    check              check_manifests(): the semantic promises
    strict, 1 version  validate_strict() against Kubernetes 1.37 (cached validators)
    strict, 8 versions the same against 1.30 … 1.37, what the tests run
    baseline           kubernetes_validate.validate(obj, "1.37", strict=True) per object:
                       the library's own API, which re-reads its schemas on every call
    helm               the Helm chart rendered by Helm's Go engine (helm-python-sdk)

The target is on "render + strict, 1 version"; the first round includes
loading the schemas (reported separately as "cold").

    .venv/bin/python bench/deploy/render.py [agents] [rounds]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import helm_python as helm
import kubernetes_validate

from agent_smith.crew import Crew
from agent_smith.deploy import VERSIONS, check_manifests, render_crew, to_yaml_stream, validate_strict
from agent_smith.deploy.chart import chart_values
from agent_smith.deploy.validate import CUSTOM_KINDS

CHART = "charts/agent-smith"
TARGET_SECONDS = 5.0


def crew_of(agents: int) -> tuple[Crew, dict[str, str]]:
    data: dict[str, Any] = {
        "crew": {"name": "bench-crew"},
        "agents": [
            {
                "name": f"agent-{i:02d}",
                "repos": [f"acme/service-{i:02d}", "acme/shared"],
                "matrix": {"user_id": f"@agent-{i:02d}:example.org", "rooms": ["#crew:example.org"]},
                "egress": {"allow": [{"host": f"api-{i:02d}.example.com"}]},
                "env": {"TEAM": "platform"},
            }
            for i in range(agents)
        ],
        "matrix": {"homeserver": "http://synapse.chat.svc:8008"},
        "egress": {
            "allow": [{"host": "api.github.com"}, {"host": "github.com"}, {"host": "*.githubusercontent.com"}],
            "secrets": [
                {
                    "name": "github",
                    "placeholder": "agent-smith-placeholder-github-token",
                    "source": {"env": "GITHUB_REAL_TOKEN"},
                    "hosts": ["api.github.com", "github.com"],
                }
            ],
            "claude_login": {"enabled": True},
        },
        "kubernetes": {"agent_role": True, "api_server": {"cidr": "10.0.0.1/32"}},
    }
    crew = Crew.model_validate(data)
    files = {"crew.yaml": "# the crew\n" * 200, "agents/_shared/CLAUDE.md": "Shared rules.\n" * 100}
    for agent in crew.agents:
        files[f"agents/{agent.name}/CLAUDE.md"] = f"# {agent.name}\n" + "Persona text.\n" * 60
        files[f"agents/{agent.name}/subagents/reviewer.md"] = "---\nname: reviewer\ndescription: r\n---\n" * 5
    return crew, files


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str]) -> int:
    agents = int(argv[0]) if argv else 50
    rounds = int(argv[1]) if len(argv) > 1 else 5
    crew, files = crew_of(agents)

    cold_start = time.perf_counter()
    rendered = render_crew(crew, files)
    assert validate_strict(rendered.manifests, ("1.37",)) == []
    cold = time.perf_counter() - cold_start
    manifests = rendered.manifests
    assert check_manifests(manifests, rendered.external, secret_env={"GITHUB_REAL_TOKEN"}) == []
    assert validate_strict(manifests, VERSIONS) == []

    plain = [m for m in manifests if (m["apiVersion"], m["kind"]) not in CUSTOM_KINDS]
    values = chart_values(crew, files)
    with helm.Chart.load(CHART) as chart:
        chart_docs = chart.render(values, name="bench", namespace="agent-smith")

    def render() -> None:
        render_crew(crew, files)

    def check() -> None:
        check_manifests(manifests, rendered.external)

    def strict_one() -> None:
        validate_strict(manifests, ("1.37",))

    def strict_all() -> None:
        validate_strict(manifests, VERSIONS)

    def baseline() -> None:
        for obj in plain:
            kubernetes_validate.validate(obj, "1.37", strict=True)

    def helm_render() -> None:
        with helm.Chart.load(CHART) as chart:
            chart.render(values, name="bench", namespace="agent-smith")

    cases = {
        "render": render,
        "check": check,
        "strict, 1 version": strict_one,
        "strict, 8 versions": strict_all,
        "baseline (library per call, 1 version)": baseline,
        "helm render (Go engine)": helm_render,
    }
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(timed(fn))
    median = {name: statistics.median(values) for name, values in samples.items()}

    yaml_bytes = len(to_yaml_stream(manifests).encode())
    config_bytes = sum(len(v.encode()) for v in manifests[0]["data"].values())
    chart_bytes = sum(len(text.encode()) for text in chart_docs.values())
    print(f"crew: {agents} agents, {len(manifests)} objects, {rounds} rounds (medians)")
    print(
        f"  output: {yaml_bytes / 1024:.0f} KiB of YAML ({yaml_bytes / agents / 1024:.1f} KiB per agent); "
        f"crew ConfigMap {config_bytes / 1024:.0f} KiB of 1024; chart output {chart_bytes / 1024:.0f} KiB"
    )
    for name, seconds in median.items():
        print(f"  {name:<42} {seconds * 1000:8.1f} ms")
    total = median["render"] + median["strict, 1 version"]
    print(f"  cold (first render + strict, schemas loaded) {cold * 1000:8.1f} ms")
    print(
        f"render + strict (1 version): {total:.3f} s = {total / TARGET_SECONDS:.2f}x the {TARGET_SECONDS:.0f} s target"
    )
    all_versions = median["render"] + median["strict, 8 versions"]
    print(f"render + strict (8 versions): {all_versions:.3f} s = {all_versions / TARGET_SECONDS:.2f}x the target")
    print(
        f"cached validators vs the library's per-call API: "
        f"{median['baseline (library per call, 1 version)'] / median['strict, 1 version']:.1f}x faster"
    )
    print(f"python render vs helm render: {median['helm render (Go engine)'] / median['render']:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
