"""The tmux shell against a real tmux server on a private socket."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from agent_smith.errors import OperationError
from agent_smith.runtime import Tmux
from tests.fixtures.processes import children_of, pid_alive

pytestmark = pytest.mark.real

ENV = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent", "AGENT_MARK": "mark value"}


def test_the_session_gets_exactly_the_given_environment(tmux_server: Tmux, tmp_path: Path) -> None:
    os.environ["AGENT_SMITH_AMBIENT_PROBE"] = "must-not-leak"
    try:
        tmux_server.new_session(
            "envcheck", ["sh", "-c", "env | sort; echo END-OF-ENV; exec sleep 60"], env=ENV, cwd=tmp_path
        )
    finally:
        del os.environ["AGENT_SMITH_AMBIENT_PROBE"]
    tmux_server.wait_for("envcheck", "END-OF-ENV", timeout=10)
    names = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in tmux_server.capture("envcheck").splitlines()
        if "=" in line
    }
    assert names["AGENT_MARK"] == "mark value"
    assert names["PATH"] == "/usr/bin:/bin"
    assert names["HOME"] == "/nonexistent"
    assert names["PWD"] == str(tmp_path)
    assert set(names) - set(ENV) <= {
        "PWD",
        "LANG",
        "TERM",
        "TERM_PROGRAM",
        "TERM_PROGRAM_VERSION",
        "TMUX",
        "TMUX_PANE",
        "SHELL",
        "SHLVL",
        "_",
    }
    assert "SSL_CERT_FILE" not in names


def test_text_is_typed_literally_then_enter(tmux_server: Tmux, tmp_path: Path) -> None:
    session = tmux_server.new_session("typing", ["cat"], env=ENV, cwd=tmp_path, width=120, height=20)
    assert pid_alive(session.pane_pid)
    typed = "echo $HOME; C-c 'quotes' \"double\" ;Enter"
    tmux_server.send_text("typing", typed)
    tmux_server.wait_for("typing", r"(?m)^echo \$HOME.*\n^echo \$HOME", timeout=10)
    lines = [line for line in tmux_server.capture("typing").splitlines() if line]
    assert lines == [typed, typed]
    tmux_server.send_keys("typing", "C-d")
    with pytest.raises(OperationError, match="'typing' ended"):
        tmux_server.wait_for("typing", "never", timeout=10)


def test_wait_for_times_out_with_the_pane_tail(tmux_server: Tmux, tmp_path: Path) -> None:
    tmux_server.new_session("quiet", ["sh", "-c", "echo only-this; exec sleep 60"], env=ENV, cwd=tmp_path)
    tmux_server.wait_for("quiet", "only-this", timeout=10)
    with pytest.raises(OperationError, match=r"no 'never' within 0\.2s; the pane ends with:\nonly-this"):
        tmux_server.wait_for("quiet", "never", timeout=0.2)


def test_an_exited_command_ends_its_session_unless_kept(tmux_server: Tmux, tmp_path: Path) -> None:
    # The command exits only once its output has been seen: tmux 3.3 can drop the last
    # output of a command that exits right after writing it.
    tmux_server.new_session(
        "kept", ["sh", "-c", "echo last words; read line; exit 3"], env=ENV, cwd=tmp_path, remain_on_exit=True
    )
    tmux_server.wait_for("kept", "last words", timeout=10)
    tmux_server.send_text("kept", "")
    tmux_server.new_session("gone", ["sh", "-c", "exit 0"], env=ENV, cwd=tmp_path)
    with pytest.raises(OperationError, match="'gone' ended"):
        tmux_server.wait_for("gone", "never", timeout=10)
    tmux_server.wait_for("kept", r"Pane is dead \(status 3", timeout=10, history=True)
    assert tmux_server.pane_dead("kept")
    # tmux may scroll the dead pane's last screen into the history to show its notice.
    assert "last words" in tmux_server.capture("kept", history=True)
    assert tmux_server.list_sessions() == ["kept"]


def test_kill_session_and_server_reap_their_processes(tmux_server: Tmux, tmp_path: Path) -> None:
    one = tmux_server.new_session("one", ["sleep", "60"], env=ENV, cwd=tmp_path)
    two = tmux_server.new_session("two", ["sh", "-c", "trap '' HUP; exec sleep 60"], env=ENV, cwd=tmp_path)
    assert sorted(tmux_server.list_sessions()) == ["one", "two"]
    tmux_server.kill_session("one")
    assert not pid_alive(one.pane_pid)
    assert tmux_server.list_sessions() == ["two"]
    server = tmux_server.server_pid()
    assert server is not None
    tmux_server.kill_server(grace=0.5)
    assert not pid_alive(two.pane_pid), "a pane ignoring SIGHUP is killed after the grace period"
    assert not pid_alive(server)
    assert tmux_server.list_sessions() == []
    tmux_server.kill_server()
    tmux_server.kill_session("one")


def test_the_default_tmux_server_is_never_touched(tmux_server: Tmux, tmp_path: Path) -> None:
    tmux_server.new_session("private", ["sleep", "60"], env=ENV, cwd=tmp_path)
    socket = Path(f"/tmp/tmux-{os.getuid()}/{tmux_server.socket_name}")
    assert socket.is_socket()
    default = subprocess.run(
        ["tmux", "-L", "default", "has-session", "-t", "=private"],
        capture_output=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert default.returncode != 0


def test_no_server_is_known_without_running_tmux(tmp_path: Path) -> None:
    # A binary that cannot run: any tmux call would raise.
    absent = Tmux(f"absent-{os.getpid()}", binary=str(tmp_path / "no-tmux"))
    assert not absent.socket_path.exists()
    assert absent.server_pid() is None
    assert not absent.has_session("any")
    assert absent.list_sessions() == []
    assert absent.pane_pids() == []


def test_the_socket_is_where_tmux_puts_it(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMUX_TMPDIR": str(tmp_path)}
    tmux = Tmux(f"placed-{os.getpid()}", server_env=env)
    try:
        tmux.new_session("here", ["sleep", "60"], env=ENV, cwd=tmp_path)
        assert tmux.socket_path == tmp_path / f"tmux-{os.getuid()}" / tmux.socket_name
        assert tmux.socket_path.is_socket()
        assert tmux.has_session("here")
        assert tmux.list_sessions() == ["here"]
        assert tmux.server_pid() is not None
    finally:
        tmux.kill_server()
    assert not tmux.has_session("here")


def test_the_socket_an_ended_server_left_is_known_for_what_it_is(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMUX_TMPDIR": str(tmp_path)}
    tmux = Tmux(f"ended-{os.getpid()}", server_env=env)
    tmux.new_session("gone", ["sleep", "60"], env=ENV, cwd=tmp_path)
    server = tmux.server_pid()
    assert server is not None
    subprocess.run(["tmux", "-L", tmux.socket_name, "kill-server"], env=env, check=True)
    deadline = time.monotonic() + 5
    while pid_alive(server) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert tmux.socket_path.is_socket(), "tmux leaves its socket behind"
    # Nothing listens there: answered without running tmux.
    ended = Tmux(tmux.socket_name, server_env=env, binary=str(tmp_path / "no-tmux"))
    assert ended.server_pid() is None
    assert not ended.has_session("gone")
    assert ended.list_sessions() == []


def test_socket_names_are_plain() -> None:
    with pytest.raises(ValueError, match="plain name"):
        Tmux("../elsewhere")
    with pytest.raises(ValueError, match="needs a command"):
        Tmux("agent-smith-unused").new_session("x", [], env=ENV, cwd=Path("/"))


def test_children_in_their_own_session_are_reaped_too(tmux_server: Tmux, tmp_path: Path) -> None:
    # A tool's background job in a session of its own never sees tmux's SIGHUP.
    session = tmux_server.new_session(
        "jobs", ["sh", "-c", "setsid sleep 61 & echo started; exec sleep 60"], env=ENV, cwd=tmp_path
    )
    tmux_server.wait_for("jobs", "started", timeout=10)
    escaped = _wait_for_process(session.pane_pid, b"sleep\x0061\x00")
    tmux_server.kill_session("jobs")
    assert not pid_alive(escaped)


def _wait_for_process(root: int, cmdline: bytes, timeout: float = 10.0) -> int:
    """The pid below `root` running `cmdline`, once its exec has happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in children_of(root):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes() == cmdline:
                    return pid
            except OSError:
                continue
        time.sleep(0.05)
    raise AssertionError(f"no {cmdline!r} below pid {root} within {timeout}s")


def test_kill_session_reaps_every_pane_of_the_session(tmux_server: Tmux, tmp_path: Path) -> None:
    first = tmux_server.new_session("split", ["sleep", "62"], env=ENV, cwd=tmp_path)
    subprocess.run(
        ["tmux", "-L", tmux_server.socket_name, "split-window", "-t", "=split:", "sleep", "63"],
        env={"PATH": "/usr/bin:/bin"},
        check=True,
    )
    panes = tmux_server.pane_pids()
    assert len(panes) == 2
    assert first.pane_pid in panes
    tmux_server.kill_session("split")
    assert not [pid for pid in panes if pid_alive(pid)]


def test_kill_server_removes_the_socket_tmux_leaves_and_no_live_one(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "TMUX_TMPDIR": str(tmp_path)}
    tmux = Tmux(f"tidy-{os.getpid()}", server_env=env)
    tmux.new_session("one", ["sleep", "60"], env=ENV, cwd=tmp_path)
    tmux._remove_dead_socket()
    assert tmux.socket_path.is_socket(), "a live server's socket stays"
    assert tmux.has_session("one")
    tmux.kill_server()
    assert not tmux.socket_path.exists()
    tmux.kill_server()
    # A server that ended on its own (its last session did), as the supervisor's does at `down`.
    tmux.new_session("two", ["sleep", "60"], env=ENV, cwd=tmp_path)
    tmux.kill_session("two")
    assert tmux.server_pid() is None
    tmux.kill_server()
    assert not tmux.socket_path.exists()


def test_focus_events_are_on_for_every_pane_of_the_server(tmux_server: Tmux, tmp_path: Path) -> None:
    """Asked from inside a pane as Claude Code asks (`tmux show -gv focus-events`): off, it advises
    editing ~/.tmux.conf, which this server (`-f /dev/null`) never reads."""
    probe = ["sh", "-c", "echo focus=$(tmux show -gv focus-events); exec sleep 60"]
    for name in ("first", "second"):
        tmux_server.new_session(name, probe, env=ENV, cwd=tmp_path)
        assert tmux_server.wait_for(name, r"focus=(\w+)", timeout=10)[1] == "on"
