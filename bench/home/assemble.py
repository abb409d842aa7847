"""Assembling one agent without clones vs plain copying of the same files.

The crew is the example crew `agent-smith init` writes (two agents, shared
rules, settings, credentials stub, one subagent each), with the firewall's
CA already created (a real `up` creates it once for the whole crew).
Side by side in one process, alternating, several rounds; medians and
ratios printed.

    baseline      copy the files an assembled home is made of: the shared and
                  persona CLAUDE.md, settings.json, the credentials stub, the
                  subagents, and the system CA bundle (what the per-agent bundle
                  is built from) — shutil.copyfile into a fresh directory
    synced        the same copies, each with write_atomic (fsync + rename), as
                  assembly writes them: shows what durability alone costs
    first         assemble into a fresh home (crew loaded once, outside the timing)
    again         assemble over the same home again: nothing changes
    with load     load_crew + assemble into a fresh home: what `agent-smith
                  assemble` does after interpreter start

Run: .venv/bin/python bench/home/assemble.py [rounds]
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agent_smith.crew import load_crew, scaffold_crew
from agent_smith.fsutil import write_atomic
from agent_smith.home import AssembleOptions, agent_environment, assemble
from agent_smith.home.plan import SYSTEM_BUNDLES


def _timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        crew_dir = root / "crew"
        scaffold_crew(crew_dir)
        yaml = crew_dir / "crew.yaml"
        yaml.write_text(yaml.read_text() + f"\nruntime:\n  state_dir: {root / 'state'}\n")
        loaded = load_crew(crew_dir, env={})
        agent_environment(loaded, "devbot")  # creates the firewall's CA and identity once
        command = str(Path(sys.executable).parent / "agent-smith")
        persona = loaded.personas["devbot"]
        sources = [
            loaded.shared.directory / "CLAUDE.md",
            persona.directory / "CLAUDE.md",
            loaded.shared.directory / "settings.json",
            loaded.shared.directory / ".credentials.json",
            *persona.subagents,
            next(p for p in SYSTEM_BUNDLES if p.is_file()),
        ]
        counter = iter(range(10**9))

        def copy_plain() -> None:
            target = root / f"copy-{next(counter)}"
            target.mkdir()
            for i, source in enumerate(sources):
                shutil.copyfile(source, target / f"{i}-{source.name}")

        def copy_synced() -> None:
            target = root / f"copy-{next(counter)}"
            target.mkdir()
            for i, source in enumerate(sources):
                write_atomic(target / f"{i}-{source.name}", source.read_bytes())

        def options(home: Path) -> AssembleOptions:
            return AssembleOptions(home=home, workspace=root / "ws", agent_smith_command=command, env={}, clone=False)

        def first() -> None:
            assemble(loaded, "devbot", options(root / f"home-{next(counter)}"))

        stable = root / "home-stable"
        assemble(loaded, "devbot", options(stable))

        def again() -> None:
            report = assemble(loaded, "devbot", options(stable))
            assert not report.changed

        def with_load() -> None:
            assemble(load_crew(crew_dir, env={}), "devbot", options(root / f"home-{next(counter)}"))

        samples: dict[str, list[float]] = {"baseline": [], "synced": [], "first": [], "again": [], "with load": []}
        for _ in range(rounds):
            samples["baseline"].append(_timed(copy_plain))
            samples["synced"].append(_timed(copy_synced))
            samples["first"].append(_timed(first))
            samples["again"].append(_timed(again))
            samples["with load"].append(_timed(with_load))
        med = {name: statistics.median(values) for name, values in samples.items()}

    print(f"assembling one agent without clones vs plain copying of the same files, median of {rounds} rounds")
    print(f"  baseline: copy {len(sources)} files                {med['baseline'] * 1000:8.2f} ms")
    label = {
        "synced": "copy, each written atomically",
        "first": "assemble, fresh home",
        "again": "assemble, nothing to change",
        "with load": "load crew + assemble",
    }
    for name in ("synced", "first", "again", "with load"):
        print(f"  {label[name]:<34} {med[name] * 1000:8.2f} ms   ratio to baseline {med[name] / med['baseline']:6.1f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
