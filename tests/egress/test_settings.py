"""Firewall settings handed from the supervisor to the firewall process: whole, and nothing else."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.crew import Crew, load_crew
from agent_smith.egress import FirewallLaunch, FirewallSettings, launch_for, read_launch, settings_for
from agent_smith.egress.claude import TokenStore
from agent_smith.egress.policy import ClaudePolicy, Policy, Rule, Secret
from agent_smith.egress.settings import unpack_launch
from agent_smith.egress.state import FirewallState
from agent_smith.errors import UsageError

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-", min_size=1, max_size=12)
paths = st.builds(Path, st.text(alphabet="abc/_-", min_size=1, max_size=12).map(lambda t: f"/{t}"))
addresses = st.tuples(names, st.integers(0, 65535))
rules = st.builds(
    Rule,
    host=names,
    ports=st.frozensets(st.integers(1, 65535), min_size=1, max_size=3),
    methods=st.none() | st.frozensets(st.sampled_from(["GET", "POST", "PUT"])),
    paths=st.none() | st.tuples(st.text(max_size=8)),
    allow_private=st.booleans(),
    origin=st.text(max_size=16),
)
secrets = st.builds(
    Secret,
    name=names,
    placeholder=st.text(min_size=1, max_size=20),
    value=st.text(min_size=1, max_size=40),
    hosts=st.tuples(names),
    header=st.sampled_from(["authorization", "x-api-key"]),
    scheme=st.sampled_from(["auto", "bearer", "token", "basic", "raw"]),
    agents=st.none() | st.frozensets(names, max_size=3),
)
policies = st.builds(
    Policy,
    rules=st.lists(rules, max_size=4).map(tuple),
    agent_rules=st.dictionaries(names, st.lists(rules, max_size=2).map(tuple), max_size=2),
    claude=st.none()
    | st.builds(ClaudePolicy, names, names, st.tuples(names), names, st.integers(1, 65535), st.text(max_size=8)),
)
launches = st.builds(
    FirewallLaunch,
    settings=st.builds(
        FirewallSettings,
        policy=policies,
        secrets=st.lists(secrets, max_size=3).map(tuple),
        agents=st.frozensets(names, max_size=4),
        identity_key=st.binary(min_size=32, max_size=32),
        ca_store=st.builds(FirewallState, paths),
        listen=addresses,
        transparent_listen=st.none() | addresses,
        transparent_agents=st.dictionaries(names, addresses, max_size=3),
        upstream_ca=st.none() | paths,
        audit_path=st.none() | paths,
        claude_store=st.none() | st.builds(TokenStore, paths),
        claude_refresh_before=st.floats(0, 86400),
        metrics_listen=st.none() | addresses,
        http2=st.booleans(),
    ),
    crew_dir=paths,
    # The crew as started, as JSON data: what a crew's model_dump(mode="json") is made of.
    crew=st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
            max_leaves=10,
        ),
        max_size=4,
    ),
)


@given(launches)
def test_a_packed_launch_unpacks_to_the_same_settings(launch: FirewallLaunch) -> None:
    assert unpack_launch(launch.pack()) == launch


class _RunsCode:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("true",))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (pickle.dumps(_RunsCode()), r"posix\.system is not part of firewall settings"),
        (pickle.dumps(eval), r"builtins\.eval is not part of firewall settings"),
        (pickle.dumps(Rule("a", frozenset({1}))), "not a firewall launch"),
        (b"", "unreadable"),
        (b"not a pickle", "unreadable"),
    ],
)
def test_anything_but_a_launch_is_refused_in_one_line_and_runs_nothing(data: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message) as refused:
        unpack_launch(data)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith("the firewall settings handed down are unreadable")


def _crew_dir(root: Path) -> Path:
    crew = root / "crew"
    for name in ("_shared", "devbot"):
        (crew / "agents" / name).mkdir(parents=True)
    (crew / "agents" / "devbot" / "CLAUDE.md").write_text("You are devbot.\n")
    (crew / "crew.yaml").write_text(
        f"""version: 1
crew: {{name: handed}}
agents: [{{name: devbot}}]
runtime: {{state_dir: {root / "state"}}}
egress:
  allow: [{{host: api.github.com}}]
  secrets:
    - {{name: github, placeholder: agent-smith-placeholder-github, source: {{env: GH_REAL}}, hosts: [api.github.com]}}
"""
    )
    return crew


def test_the_launch_carries_the_crew_s_settings_read_from_a_pipe(tmp_path: Path) -> None:
    crew_dir = _crew_dir(tmp_path)
    env = {"GH_REAL": "a-value-only-the-firewall-sees"}
    crew = load_crew(crew_dir, env).crew
    launch = launch_for(crew, crew_dir, env)
    assert launch.settings == settings_for(crew, crew_dir, env)
    assert launch.crew_dir == crew_dir.absolute()
    assert Crew.model_validate(launch.crew).model_dump() == crew.model_dump()
    read, write = os.pipe()
    with os.fdopen(write, "wb") as pipe:
        pipe.write(launch.pack())
    assert read_launch(read) == launch
    with pytest.raises(UsageError, match=r"--settings-fd \d+: cannot read the firewall settings"):
        read_launch(read)


def test_reading_a_launch_loads_neither_the_crew_nor_cryptography(tmp_path: Path) -> None:
    crew_dir = _crew_dir(tmp_path)
    env = {"GH_REAL": "a-value-only-the-firewall-sees"}
    packed = launch_for(load_crew(crew_dir, env).crew, crew_dir, env).pack()
    probe = (
        "import sys\n"
        "from agent_smith.egress import read_launch\n"
        "launch = read_launch(0)\n"
        "heavy = ('pydantic', 'ruamel', 'agent_smith.crew', 'cryptography', 'h2')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)), launch.settings.agents)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], input=packed, capture_output=True, timeout=60, check=True)
    assert done.stdout.decode().strip() == "[] frozenset({'devbot'})"
