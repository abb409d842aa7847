"""What a second `up` says when it asks for other options than the running supervisor's (pure)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agent_smith.runtime import ServeOptions, options_kept, started_with

hosts = st.lists(st.sampled_from(["127.0.0.1", "localhost", "10.1.1.1", "matrix.test"]), unique=True, max_size=3)


@given(hosts, st.booleans(), hosts, st.booleans())
def test_only_other_options_are_told_and_then_what_stays(
    running_hosts: list[str], running_firewall: bool, asked_hosts: list[str], asked_firewall: bool
) -> None:
    running = started_with(ServeOptions(no_proxy=tuple(running_hosts), firewall=running_firewall))
    asked = started_with(ServeOptions(no_proxy=tuple(reversed(asked_hosts)), firewall=asked_firewall))
    told = options_kept(running, asked)
    if sorted(running_hosts) == sorted(asked_hosts) and running_firewall == asked_firewall:
        assert told is None
        return
    assert told is not None
    assert told.startswith("the running supervisor keeps the options it was started with (")
    assert told.endswith("): `agent-smith down`, then `up`, to change them")
    assert ("--no-proxy " + ", ".join(sorted(running_hosts)) if running_hosts else "no --no-proxy") in told
    assert ("the firewall" if running_firewall else "--no-firewall") in told
