"""Pure parts of the shell: claude's command line, dialogs, pane logs, the run directory."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent_smith.errors import OperationError, UsageError
from agent_smith.runtime.launch import (
    busy,
    claude_argv,
    confirms_dev_channels,
    has_previous_session,
    project_key,
    unsent_input,
    with_resume,
)
from agent_smith.runtime.panelog import LONGEST_LINE, Follower, Streamer, readable
from agent_smith.runtime.rundir import RunDir, SupervisorRunning
from agent_smith.runtime.services import parse_listen
from agent_smith.runtime.session import chunk
from agent_smith.runtime.supervisor import _SUBMIT_CHECK, _SUBMIT_TRIES, Unsent, at_prompt, submit_step
from agent_smith.runtime.sweep import environment_value

CLAUDE = Path("/opt/claude")


@pytest.mark.parametrize(
    ("mode", "remote", "channels", "argv"),
    [
        ("default", None, (), ["/opt/claude"]),
        ("acceptEdits", None, (), ["/opt/claude", "--permission-mode", "acceptEdits"]),
        ("plan", "devbot", (), ["/opt/claude", "--permission-mode", "plan", "--remote-control", "devbot"]),
        (
            "default",
            None,
            ("server:matrix",),
            ["/opt/claude", "--dangerously-load-development-channels", "server:matrix"],
        ),
    ],
)
def test_claude_argv(mode: str, remote: str | None, channels: tuple[str, ...], argv: list[str]) -> None:
    assert list(claude_argv(CLAUDE, permission_mode=mode, remote_control=remote, channels=channels)) == argv


def test_continue_only_when_a_previous_session_exists(tmp_path: Path) -> None:
    cwd = Path("/state/agents/devbot/workspace/acme/widgets")
    assert project_key(cwd) == "-state-agents-devbot-workspace-acme-widgets"
    config = tmp_path / ".claude"
    assert not has_previous_session(config, cwd)
    (config / "projects" / project_key(cwd)).mkdir(parents=True)
    assert not has_previous_session(config, cwd)
    (config / "projects" / project_key(cwd) / "0b9e.jsonl").write_text("{}\n")
    assert has_previous_session(config, cwd)
    assert with_resume(("claude",), True) == ("claude", "--continue")
    assert with_resume(("claude",), False) == ("claude",)


DIALOG = """
 WARNING: Loading development channels

 --dangerously-load-development-channels is for local channel development only.
 Please use --channels to run a list of approved channels.
 Channels: server:matrix

 ❯ 1. I am using this for local development
   2. Exit
"""


def test_the_dev_channels_dialog_is_confirmed_only_for_the_channels_asked_for() -> None:
    assert confirms_dev_channels(DIALOG, ["server:matrix"])
    assert not confirms_dev_channels(DIALOG, ["server:other"])
    assert not confirms_dev_channels(DIALOG.replace("server:matrix", "server:matrix, server:evil"), ["server:matrix"])
    assert not confirms_dev_channels(DIALOG, [])
    assert not confirms_dev_channels("❯ ", ["server:matrix"])


@pytest.mark.parametrize(
    ("screen", "prompt", "working"),
    [
        ("╭──╮\n❯ \n╰──╯\n  ? for shortcuts", True, False),
        ("✻ Baking… (esc to interrupt)\n❯ \n", True, True),
        (DIALOG, False, False),
        ("Loading…", False, False),
    ],
)
def test_reading_the_screen(screen: str, prompt: bool, working: bool) -> None:
    assert at_prompt(screen) is prompt
    assert busy(screen) is working


RULE = "─" * 60
TYPED = "Read the open issues and PRs of your repositories, say hello in the crew room, and wait for work."


@pytest.mark.parametrize(
    ("screen", "unsent"),
    [
        # As the pinned CLI showed it under `run`: typed, its Enter dropped.
        (f" ▐▛███▛█   Claude Code\n{RULE}\n❯ {TYPED}\n{RULE}\n  ⏵⏵ accept edits on", True),
        (f"{RULE}\n❯ {TYPED[:60]}\n  {TYPED[60:]}\n{RULE}\n", True),
        (f"{RULE}\n❯ [Pasted text #1 +12 lines]\n{RULE}\n", True),
        # Sent: the transcript holds it, the box is empty.
        (f"❯ {TYPED}\n● Standing by.\n{RULE}\n❯ \n{RULE}\n  ⏵⏵ accept edits on", False),
        (f"{RULE}\n❯\n{RULE}\n", False),
        # No box to read (a screen being redrawn): no answer either way.
        (f"❯ {TYPED}\n", None),
        (f"{RULE}\n❯ {TYPED}\n", None),
        ("Loading…", None),
    ],
)
def test_text_waiting_unsent_in_claude_s_input_box(screen: str, unsent: bool | None) -> None:
    assert unsent_input(screen) is unsent


def test_a_first_run_prompt_left_in_the_input_gets_enter_again_a_few_times_at_most() -> None:
    typed = Unsent(10.0 + _SUBMIT_CHECK)
    assert submit_step(typed, True, 10.2) == (typed, None), "too soon to tell"
    state: Unsent | None = typed
    now, presses = 10.0, 0
    while state is not None:
        now += 0.25
        state, act = submit_step(state, True, now)
        presses += act == "enter"
        assert act != "give up" or presses == _SUBMIT_TRIES
    assert presses == _SUBMIT_TRIES
    assert now == pytest.approx(10.0 + _SUBMIT_CHECK * (_SUBMIT_TRIES + 1), abs=0.25)


def test_a_first_run_prompt_is_sent_once_the_box_stays_empty_not_at_one_look() -> None:
    typed = Unsent(10.0 + _SUBMIT_CHECK)
    # Seen empty once (a screen mid-redraw drew the text outside the box), then there again.
    state, act = submit_step(typed, False, 10.2)
    assert state is not None
    assert act is None
    # A screen without a box tells nothing.
    assert submit_step(state, None, 10.6) == (state, None)
    state, act = submit_step(state, True, 11.1)
    assert (state, act) == (Unsent(11.1 + _SUBMIT_CHECK, 1), "enter")
    # Empty from now on: sent once it has stayed so for a check's time.
    state, act = submit_step(state, False, 11.5)
    assert state is not None
    assert act is None
    assert submit_step(state, False, 11.5 + _SUBMIT_CHECK - 0.01)[0] is not None
    assert submit_step(state, False, 11.5 + _SUBMIT_CHECK) == (None, None)


def test_a_clock_set_moves_a_first_run_prompt_s_wait_with_it() -> None:
    assert Unsent(10.0, 2, 9.5).shifted(-3600) == Unsent(10.0 - 3600, 2, 9.5 - 3600)
    assert Unsent(10.0).shifted(60) == Unsent(70.0)


@given(
    st.lists(st.sampled_from([True, False, None]), min_size=1, max_size=40),
    st.lists(st.floats(0.0, 3.0), min_size=40, max_size=40),
)
def test_enter_is_pressed_only_while_the_prompt_waits_and_never_more_than_the_tries(
    waiting: list[bool | None], gaps: list[float]
) -> None:
    state: Unsent | None = Unsent(_SUBMIT_CHECK)
    now, presses = 0.0, 0
    for still, gap in zip(waiting, gaps, strict=False):
        if state is None:
            break
        now += gap
        before = state
        state, act = submit_step(state, still, now)
        if act == "enter":
            presses += 1
            assert still is True
            assert now >= before.at
        if still is not True:
            assert act is None
        if state is None and act is None:
            # Taken for sent only once the box stayed empty for a check's time.
            assert still is False
            assert before.empty_since is not None
            assert now - before.empty_since >= _SUBMIT_CHECK
    assert presses <= _SUBMIT_TRIES


def test_readable_pane_output() -> None:
    raw = b"\x1b]0;title\x07\x1b[1;32mready\x1b[0m\x1b[3Cnow\r\n\x1b[2Kline two\rthree\n"
    assert readable(raw) == "ready   now\nline two\nthree\n"


def test_cursor_saves_restores_and_charsets_leave_nothing_behind() -> None:
    # claude 2.1.331 draws its logo between ESC 7 and ESC 8: "78" was left in `kubectl logs`.
    assert readable(b"\x1b7 \xe2\x96\x90\xe2\x96\x9b Claude Code\x1b8\x1b(Bdone\x1bc\x1b=") == " ▐▛ Claude Codedone"


def test_words_placed_by_column_keep_their_spaces() -> None:
    """As claude 2.1.331 writes its dev-channels warning: each word moved to its column (CSI n G)."""
    raw = b"WARNING:\x1b[12GLoading\x1b[20Gdevelopment\x1b[32Gchannels\r\n\x1b[3Gindented\x1b[1Gback"
    assert readable(raw) == "WARNING:   Loading development channels\n  indented back"


def test_a_log_begun_anew_before_the_first_look_is_streamed_whole(tmp_path: Path) -> None:
    # A new pipe as the agent started: everything in its chunk is this run's.
    log = tmp_path / "a.log"
    chunk(log, 0).write_bytes(b"an earlier run's line\n")
    lines: list[str] = []
    streamer = Streamer([("a:claude", log), ("a:shell", tmp_path / "b.log")], lines.append)
    chunk(log, 1).write_bytes(b"first\n")
    chunk(tmp_path / "b.log", 0).write_bytes(b"made since\n")
    streamer.pump()
    assert lines == ["[a:claude] first\n", "[a:shell] made since\n"]


@given(st.lists(st.sampled_from([b"word", b" ", b"\x1b[5G", b"\x1b[2C", b"\x1b[1;31m", b"\r\n", b"\xe2\x9d\xaf"])))
def test_readable_text_has_no_escapes_and_keeps_every_word(parts: list[bytes]) -> None:
    raw = b"".join(parts)
    text = readable(raw)
    assert "\x1b" not in text
    assert text.count("word") == raw.count(b"word")


def test_follower_goes_on_to_the_next_chunk_and_streams_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    chunk(log, 0).write_bytes(b"an earlier run's line\n")
    lines: list[str] = []
    streamer = Streamer([("a:claude", log)], lines.append)
    with chunk(log, 0).open("ab") as fh:
        fh.write(b"one\ntw")
    assert streamer.pump() == 1
    with chunk(log, 0).open("ab") as fh:
        fh.write(b"o\n")
    chunk(log, 1).write_bytes(b"three\n")
    streamer.pump()
    with chunk(log, 1).open("ab") as fh:
        fh.write(b"bash-5.2# ")
    streamer.pump()
    assert lines[-1] == "[a:claude] three\n", "a partial line waits one round for its end"
    streamer.pump()
    streamer.close()
    assert lines == ["[a:claude] one\n", "[a:claude] two\n", "[a:claude] three\n", "[a:claude] bash-5.2# \n"]
    follower = Follower(tmp_path / "missing.log")
    assert follower.read() == b""


def test_what_a_pane_wrote_last_is_streamed_when_the_stream_finishes(tmp_path: Path) -> None:
    # The pane is gone: the line it left unended will not end, and is streamed as it is. (The
    # stream's last look kept it back for an end, and dropped it.)
    log = tmp_path / "a.log"
    lines: list[str] = []
    streamer = Streamer([("a:shell", log)], lines.append)
    chunk(log, 0).write_bytes(b"one\npart")
    assert streamer.pump() == 1
    with chunk(log, 0).open("ab") as fh:
        fh.write(b"ial")
    # The next chunk goes on where split cut the stream.
    chunk(log, 1).write_bytes(b" on\n\x1b[1mlast\x1b[0m words")
    assert streamer.finish() == 2
    assert lines == ["[a:shell] one\n", "[a:shell] partial on\n", "[a:shell] last words\n"]


def test_a_line_that_never_ends_is_streamed_in_pieces_as_it_grows(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    lines: list[str] = []
    streamer = Streamer([("a:shell", log)], lines.append)
    chunk(log, 0).write_bytes(b"y" * (2 * LONGEST_LINE + 10))
    assert streamer.pump() == 3
    assert [len(line) for line in lines] == [len("[a:shell] \n") + n for n in (LONGEST_LINE, LONGEST_LINE, 10)]
    with chunk(log, 0).open("ab") as fh:
        fh.write(b"z" * 5)
    assert streamer.pump() == 0, "a short partial line waits a round for its end"
    assert streamer.pump() == 1
    assert lines[-1] == "[a:shell] zzzzz\n"
    streamer.close()


@pytest.mark.parametrize("last", [False, True], ids=["as it runs", "at the end"])
def test_output_removed_before_it_was_streamed_is_said_where_it_was(tmp_path: Path, last: bool) -> None:
    # A reader of stdout slow enough for the supervisor to prune chunks the stream had not come
    # to: a line says so there, rather than the lines running on as if nothing was missing.
    log = tmp_path / "a.log"
    chunk(log, 0).write_bytes(b"an earlier run's line\n")
    lines: list[str] = []
    streamer = Streamer([("a:shell", log)], lines.append)
    chunk(log, 1).write_bytes(b"one\n")
    assert streamer.pump() == 1
    for number in (2, 3, 4):
        chunk(log, number).write_bytes(f"{number}\n".encode())
    chunk(log, 2).unlink()
    chunk(log, 3).unlink()
    if last:
        streamer.finish()
    while not last and streamer.pump():
        pass
    streamer.close()
    assert lines == [
        "[a:shell] one\n",
        "[a:shell] [agent-smith: 2 chunks of this pane's output removed before it was streamed: the stream's "
        "reader fell behind]\n",
        "[a:shell] 4\n",
    ]


def test_a_follower_reads_a_chunk_at_a_time_from_the_oldest_and_past_pruned_ones(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    for number, text in ((3, b"three"), (4, b""), (5, b"five")):
        chunk(log, number).write_bytes(text)
    follower = Follower(log)
    assert follower.read() == b"three"
    assert follower.read() == b"five", "an empty chunk gives nothing, and is gone past"
    # Pruned meanwhile (a reader far behind): the chunk open is read to its end all the same,
    # and one gone is skipped.
    with chunk(log, 5).open("ab") as fh:
        fh.write(b" more")
    for number, text in ((6, b"six"), (7, b"seven")):
        chunk(log, number).write_bytes(text)
    chunk(log, 5).unlink()
    chunk(log, 6).unlink()
    assert follower.read() == b" more"
    assert follower.read() == b"seven"
    assert follower.read() == b""
    follower.close()


def test_requests_are_taken_once_in_order(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "runtime")
    rd.request("stop", "alice")
    rd.request("start", "bob")
    assert [r[:2] for r in rd.take_requests()] == [("stop", "alice"), ("start", "bob")]
    assert rd.take_requests() == []


def test_the_lock_admits_one_supervisor(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "runtime")
    assert rd.running_pid() is None
    with rd.hold():
        assert rd.running_pid() == os.getpid()
        with pytest.raises(SupervisorRunning, match=rf"already runs \(pid {os.getpid()}\)"), rd.hold():
            pass
    assert rd.running_pid() is None
    assert not rd.pid_file.exists()


def test_another_command_testing_the_lock_does_not_refuse_a_supervisor(tmp_path: Path) -> None:
    # `running_pid` (status, down, up) takes the lock for an instant to test it.
    rd = RunDir(tmp_path / "runtime")
    rd.ensure()
    with rd.lock.open("a") as tester:
        fcntl.flock(tester, fcntl.LOCK_EX)
        threading.Timer(0.05, fcntl.flock, (tester, fcntl.LOCK_UN)).start()
        lock = rd.acquire()
    assert rd.running_pid() == os.getpid()
    rd.release(lock)
    assert rd.running_pid() is None


def test_a_lock_handed_to_a_forked_supervisor_is_held_by_it_alone(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "runtime")
    lock = rd.acquire()
    go, wait = os.pipe()
    holding, held = os.pipe()
    pid = os.fork()
    if pid == 0:
        with rd.hold(lock):
            os.write(held, b".")
            os.read(go, 1)
        os._exit(0)
    lock.file.close()
    assert os.read(holding, 1) == b"."
    try:
        assert rd.running_pid() == pid
        with pytest.raises(SupervisorRunning):
            rd.acquire()
    finally:
        os.write(wait, b".")
        os.waitpid(pid, 0)
    assert rd.running_pid() is None
    assert not rd.pid_file.exists()


def test_the_running_supervisor_s_status_is_its_own(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "runtime")
    assert rd.supervisor_status(timeout=1) is None
    rd.write_status({"supervisor": {"pid": 1}, "agents": {"left": {}}})  # an earlier supervisor's
    assert rd.supervisor_status(timeout=1) is None
    with rd.hold():
        with pytest.raises(OperationError, match=rf"supervisor \(pid {os.getpid()}\) said nothing of its agents"):
            rd.supervisor_status(timeout=0.1)
        own = {"supervisor": {"pid": os.getpid()}, "agents": {"solo": {}}}
        threading.Timer(0.1, rd.write_status, (own,)).start()
        assert rd.supervisor_status(timeout=5) == own
        rd.check_managed(["solo"], own)
        with pytest.raises(UsageError, match="does not manage left"):
            rd.check_managed(["solo", "left"], own)


def test_the_held_lock_knows_when_the_state_directory_went(tmp_path: Path) -> None:
    rd = RunDir(tmp_path / "state" / "runtime")
    with rd.hold() as lock:
        assert not lock.taken_away()
        (tmp_path / "state").rename(tmp_path / "moved")
        assert lock.taken_away()
        # Made anew (a status written, a second `up`): another file, not the one held.
        rd.ensure()
        rd.lock.touch()
        assert lock.taken_away()
    with rd.hold() as lock:
        shutil.rmtree(tmp_path / "state")
        assert lock.taken_away()


@pytest.mark.parametrize(("value", "parsed"), [("127.0.0.1:0", ("127.0.0.1", 0)), ("[::1]:9464", ("::1", 9464))])
def test_parse_listen(value: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(value, "runtime.metrics_listen") == parsed


def test_environment_value_reads_a_process_environment() -> None:
    assert environment_value(os.getpid(), "PATH") == os.environ["PATH"]
    assert environment_value(os.getpid(), "AGENT_SMITH_NO_SUCH_VARIABLE") is None


def test_parse_listen_rejects_what_is_not_host_port() -> None:
    with pytest.raises(UsageError, match=r"runtime\.metrics_listen: 'localhost' is not host:port"):
        parse_listen("localhost", "runtime.metrics_listen")
