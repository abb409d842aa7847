"""The two-pane layout, log capture and rotation on a real tmux server (a plain shell stands in for claude)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from agent_smith.errors import OperationError
from agent_smith.runtime import AgentSpec, Tmux
from agent_smith.runtime import session as panes
from agent_smith.runtime.session import CLAUDE_PANE, SHELL_PANE

pytestmark = pytest.mark.real
CLAUDE = panes.pane("alice", CLAUDE_PANE)  # where claude's pane is opened


def eventually(what: str, check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def captured(agent: AgentSpec, role: int) -> str:
    """What the pane's log holds, its chunks in order."""
    return b"".join(chunk.read_bytes() for chunk in chunks(agent, role)).decode()


def chunks(agent: AgentSpec, role: int) -> list[Path]:
    log = agent.log(role)
    return [panes.chunk(log, number) for number in panes.chunk_numbers(log)]


def spec(tmp_path: Path) -> AgentSpec:
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8", "TERM": "xterm-256color"}
    return AgentSpec(
        name="alice",
        session="alice",
        claude=("/bin/sh",),
        env=env,
        cwd=work,
        shell=("/bin/sh",),
        shell_cwd=work,
        config_dir=tmp_path / ".claude",
        state_dir=tmp_path / "state",
        log_dir=tmp_path / "logs",
    )


def test_layout_logs_and_respawn(tmux_server: Tmux, tmp_path: Path) -> None:
    agent = spec(tmp_path)
    panes.open_session(tmux_server, agent, agent.claude, agent.env)
    live = panes.panes(tmux_server)
    assert sorted(index for session, index in live if session == "alice") == [CLAUDE_PANE, SHELL_PANE]
    shell_pid = live[("alice", SHELL_PANE)].pid

    panes.type_text(tmux_server, CLAUDE, "echo pane-zero-$((6*7))")
    eventually("pane 0 output in its log", lambda: "pane-zero-42" in captured(agent, CLAUDE_PANE))
    eventually("the shell's prompt in its log", lambda: captured(agent, SHELL_PANE).strip() != "")

    panes.type_text(tmux_server, CLAUDE, "exit 3")
    # tmux marks the pane dead when its pty closes and records the status once it reaps the
    # process, which it may only do when told (a missed SIGCHLD): as the supervisor does.
    eventually("pane 0 dead", lambda: panes.panes(tmux_server)[("alice", CLAUDE_PANE)].dead)

    def status_read() -> bool:
        tmux_server.reap()
        return panes.panes(tmux_server)[("alice", CLAUDE_PANE)].exit_code is not None

    eventually("pane 0's exit status", status_read)
    assert panes.panes(tmux_server)[("alice", CLAUDE_PANE)].exit_code == 3

    live = panes.panes(tmux_server)
    panes.restart_claude(tmux_server, agent, agent.claude, agent.env, at=live[("alice", CLAUDE_PANE)], shell=None)
    live = panes.panes(tmux_server)
    assert not live[("alice", CLAUDE_PANE)].dead
    assert live[("alice", SHELL_PANE)].pid == shell_pid, "the shell pane is left alone"

    assert [path.name for path in chunks(agent, CLAUDE_PANE)] == ["alice.claude.log.000000"], "its pipe kept"
    panes.type_text(tmux_server, CLAUDE, "echo after-$((2+3))")
    eventually("the respawned pane's output in its log", lambda: "after-5" in captured(agent, CLAUDE_PANE))


def test_chunks_are_numbered_on_and_the_oldest_pruned() -> None:
    names = ["a.claude.log.000007", "a.claude.log.000012", "a.claude.log", "a.claude.log.1", "a.shell.log.000003"]
    assert panes.numbered([*names, "a.claude.log.0000120", "a.claude.log.00001x"], "a.claude.log") == [7, 12]
    assert panes.next_chunk([7, 12]) == 13
    assert panes.next_chunk([]) == 0
    assert panes.to_prune([7, 12, 13, 14], keep=2) == [7]
    assert panes.to_prune([7], keep=0) == []
    assert panes.chunk(Path("/logs/a.claude.log"), 42) == Path("/logs/a.claude.log.000042")


def test_one_look_reads_every_pane_and_the_screens_asked_for(tmux_server: Tmux, tmp_path: Path) -> None:
    assert panes.look(tmux_server, ["alice"]) == ({}, {}), "no server: nothing, not an error"
    agent = spec(tmp_path)
    panes.open_session(tmux_server, agent, agent.claude, agent.env)
    panes.type_text(tmux_server, CLAUDE, "echo look-$((6*7))")
    eventually("the echo on screen", lambda: "look-42" in panes.screen(tmux_server, CLAUDE))

    live, shown = panes.look(tmux_server, ["alice"])
    assert live == panes.panes(tmux_server)
    assert shown == {"alice": panes.screen(tmux_server, CLAUDE)}
    # A session that is gone stops tmux's command list: the separate calls answer instead.
    live, shown = panes.look(tmux_server, ["gone", "alice"])
    assert live == panes.panes(tmux_server)
    assert shown == {"alice": panes.screen(tmux_server, CLAUDE)}


def test_a_closed_pane_is_seen_missing_by_its_role_and_opened_again_where_it_was(
    tmux_server: Tmux, tmp_path: Path
) -> None:
    agent = spec(tmp_path)
    panes.open_session(tmux_server, agent, agent.claude, agent.env)
    shell_pid = panes.panes(tmux_server)[("alice", SHELL_PANE)].pid
    # A person attached splits claude's pane: theirs, not one of the agent's.
    tmux_server.command("split-window", "-d", "-t", "=alice:0.0", "--", "/bin/sh")
    live = panes.panes(tmux_server)
    assert sorted(live) == [("alice", CLAUDE_PANE), ("alice", SHELL_PANE)]
    assert (live[("alice", SHELL_PANE)].index, live[("alice", SHELL_PANE)].pid) == (2, shell_pid)
    tmux_server.command("kill-pane", "-t", "=alice:0.1")

    # ... then closes claude's pane (C-b x): tmux renumbers, and the shell, now pane 0, is still the shell.
    tmux_server.command("kill-pane", "-t", "=alice:0.0")
    live = panes.panes(tmux_server)
    assert ("alice", CLAUDE_PANE) not in live
    assert (live[("alice", SHELL_PANE)].index, live[("alice", SHELL_PANE)].pid) == (0, shell_pid)
    panes.restart_claude(tmux_server, agent, agent.claude, agent.env, at=None, shell=live[("alice", SHELL_PANE)])
    live = panes.panes(tmux_server)
    assert live[("alice", CLAUDE_PANE)].index == CLAUDE_PANE
    assert (live[("alice", SHELL_PANE)].index, live[("alice", SHELL_PANE)].pid) == (SHELL_PANE, shell_pid)
    panes.type_text(tmux_server, CLAUDE, "echo reopened-$((6*7))")
    eventually("the new pane's output in claude's log", lambda: "reopened-42" in captured(agent, CLAUDE_PANE))

    # The shell's pane closed: a new shell below claude's, which stays as it was.
    claude = live[("alice", CLAUDE_PANE)]
    tmux_server.command("kill-pane", "-t", "=alice:0.1")
    assert ("alice", SHELL_PANE) not in panes.panes(tmux_server)
    panes.restart_shell(tmux_server, agent, at=None, claude=claude)
    live = panes.panes(tmux_server)
    assert live[("alice", CLAUDE_PANE)] == claude
    assert live[("alice", SHELL_PANE)].index == SHELL_PANE
    assert live[("alice", SHELL_PANE)].pid != shell_pid
    tmux_server.command("send-keys", "-t", "=alice:0.1", "echo shell-$((6*7))", "Enter")
    eventually("the new shell's output in its log", lambda: "shell-42" in captured(agent, SHELL_PANE))


def test_a_person_s_panes_are_never_the_agent_s(tmux_server: Tmux, tmp_path: Path) -> None:
    agent = spec(tmp_path)
    panes.open_session(tmux_server, agent, agent.claude, agent.env)
    claude = panes.panes(tmux_server)[("alice", CLAUDE_PANE)]
    panes.type_text(tmux_server, claude.id, "echo agent-$((6*7))")
    eventually("claude's screen", lambda: "agent-42" in panes.screen(tmux_server, claude.id))
    # A pane of a person's above claude's (its prompt looks like claude's), and a window of theirs.
    tmux_server.command(
        "split-window", "-b", "-d", "-t", CLAUDE, "--", "/bin/sh", "-c", "echo '❯ mine'; exec sleep 600"
    )
    tmux_server.command("new-window", "-d", "-t", "=alice:", "--", "/bin/sh", "-c", "exec sleep 600")
    live, shown = panes.look(tmux_server, ["alice"])
    assert live[("alice", CLAUDE_PANE)] == replace(claude, index=1)
    assert "agent-42" in shown["alice"]
    assert "mine" not in shown["alice"]
    assert shown == panes.screens(tmux_server, [live[("alice", CLAUDE_PANE)]])

    # The agent's panes closed, a person's left: none of them is taken for the agent's.
    for pane_id in (claude.id, live[("alice", SHELL_PANE)].id):
        tmux_server.command("kill-pane", "-t", pane_id)
    assert tmux_server.has_session("alice")
    assert [key for key in panes.panes(tmux_server) if key[0] == "alice"] == []
    with pytest.raises(OperationError, match="neither of its panes is left"):
        panes.restart_claude(tmux_server, agent, agent.claude, agent.env, at=None, shell=None)


def test_a_session_opened_before_panes_had_roles_is_read_by_index(tmux_server: Tmux, tmp_path: Path) -> None:
    # As an earlier agent-smith left it, adopted by this one after an upgrade.
    agent = spec(tmp_path)
    tmux_server.command(
        "new-session",
        "-d",
        "-s",
        "alice",
        "--",
        "/bin/sh",
        ";",
        "split-window",
        "-d",
        "-t",
        "=alice:0.0",
        "--",
        "/bin/sh",
    )
    live = panes.panes(tmux_server)
    assert sorted(live) == [("alice", CLAUDE_PANE), ("alice", SHELL_PANE)]
    claude = live[("alice", CLAUDE_PANE)]
    # Its shell's pane closed: the new one has a role, and claude's pane is given its own.
    tmux_server.command("kill-pane", "-t", "=alice:0.1")
    panes.restart_shell(tmux_server, agent, at=None, claude=claude)
    live = panes.panes(tmux_server)
    assert live[("alice", CLAUDE_PANE)] == claude
    assert live[("alice", SHELL_PANE)].index == SHELL_PANE
    # Marked now: a person's pane is no longer read as one of the agent's by its number.
    tmux_server.command("kill-pane", "-t", live[("alice", SHELL_PANE)].id)
    tmux_server.command("split-window", "-d", "-t", claude.id, "--", "/bin/sh")
    assert ("alice", SHELL_PANE) not in panes.panes(tmux_server)


def numbered(first: int, count: int) -> tuple[str, ...]:
    """A pane's program: `count` lines L<first>…, as fast as the terminal takes them; then it waits.

    It does not exit: a process that exits right after a burst can leave its last few KB unread
    by tmux (not on the screen either), which is not the log's doing.
    """
    return ("/bin/sh", "-c", f"seq -f L%.0f {first} {first + count - 1}; exec sleep 600")


def test_rotation_respawn_and_a_new_session_lose_no_line(tmux_server: Tmux, tmp_path: Path) -> None:
    """Steady output across many chunks, a respawn, then a session opened anew over the same log:
    every line once, in order. (Renaming the log and piping the pane again at each rotation lost
    ~4 KB at one rotation in a few.)"""
    batch, size = 300_000, 64 * 1024  # ~2.5 MB a batch: some forty chunks
    agent = replace(spec(tmp_path), log_max_bytes=size)
    log = agent.log(CLAUDE_PANE)
    panes.open_session(tmux_server, agent, numbered(1, batch), agent.env)
    seen = [panes.drawn(agent, CLAUDE_PANE)]

    def printed(last: int) -> bool:
        seen.append(panes.drawn(agent, CLAUDE_PANE))
        newest = b"".join(path.read_bytes() for path in chunks(agent, CLAUDE_PANE)[-2:])
        return newest.endswith(f"L{last}\r\n".encode())

    eventually("the first batch in the log", lambda: printed(batch), timeout=60)
    assert seen == sorted(seen), "drawn only grows, across chunks"
    assert panes.drawn(agent, CLAUDE_PANE) == len(captured(agent, CLAUDE_PANE))
    assert len(chunks(agent, CLAUDE_PANE)) > 10

    # claude started again in its pane (`restart`): the same pipe goes on.
    at = panes.panes(tmux_server)[("alice", CLAUDE_PANE)]
    panes.restart_claude(tmux_server, agent, numbered(batch + 1, batch), agent.env, at=at, shell=None)
    eventually("the second batch in the log", lambda: printed(2 * batch), timeout=60)
    assert {path.stat().st_size for path in chunks(agent, CLAUDE_PANE)[:-1]} == {size}, "one writer throughout"

    # The session gone (`down`) and opened again (`up`): new chunks after the old, none written over.
    before = {path: path.read_bytes() for path in chunks(agent, CLAUDE_PANE)}
    tmux_server.command("kill-session", "-t", "=alice")
    panes.open_session(tmux_server, agent, numbered(2 * batch + 1, batch), agent.env)
    eventually("the third batch in the log", lambda: printed(3 * batch), timeout=60)
    assert {path: path.read_bytes() for path in before} == before
    assert seen == sorted(seen)

    lines = captured(agent, CLAUDE_PANE).split("\r\n")
    expected = [f"L{n}" for n in range(1, 3 * batch + 1)]
    missing = sorted(set(expected) - set(lines), key=lambda line: int(line[1:]))
    assert not missing, f"{len(missing)} lines lost, from {missing[0]}"
    assert lines == [*expected, ""], "every line once, in order"

    # The supervisor keeps the newest chunk and `keep` before it.
    numbers = panes.chunk_numbers(log)
    panes.prune(agent, CLAUDE_PANE, keep=2)
    assert panes.chunk_numbers(log) == numbers[-3:]


def test_the_first_agent_s_session_starts_the_server_with_focus_events_on(tmux_server: Tmux, tmp_path: Path) -> None:
    # Off, Claude Code tells every pane to edit ~/.tmux.conf, which this server never reads.
    agent = spec(tmp_path)
    panes.open_session(tmux_server, agent, agent.claude, agent.env)
    assert tmux_server.command("show-options", "-sv", "focus-events").strip() == "on"
