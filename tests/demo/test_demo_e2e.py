"""`agent-smith demo` end to end, headless: every step asserted from the real sources.

The demo runs in this process (`run_demo`); just before it takes everything
down, the test reads Synapse's room timeline, the JetStream stream, the
GitHub stand-in's pull request, the firewall's audit log and the agents'
tmux panes, and checks that the real GitHub tokens appear in none of them
nor in any file the run wrote. Afterwards no process of the run is left.
"""

from __future__ import annotations

import asyncio
import glob
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agent_smith.demo import Demo, DemoOptions, Step, run_demo
from agent_smith.demo.observe import room_timeline
from agent_smith.demo.script import PR_TITLE, REVIEW_COMMENT, SOURCE_FILE, TEST_FILE
from agent_smith.egress import FirewallState
from agent_smith.events import EventFilter, connect, query
from agent_smith.runtime import Tmux, run_dir
from tests.demo.kit import demo_env, files_containing, processes_mentioning
from tests.fixtures.processes import LeakCheck, children_of

pytestmark = pytest.mark.real


def stream(url: str, demo: Demo) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        nc = await connect(url)
        try:
            assert demo.loaded is not None
            return [s.payload for s in await query(nc, demo.loaded.crew.events, EventFilter(), limit=1000)]
        finally:
            await nc.close()

    return asyncio.run(read())


def timeline(demo: Demo) -> list[dict[str, Any]]:
    assert demo.synapse is not None
    assert demo.operator is not None
    assert demo.room_id is not None
    return room_timeline(demo.synapse.url, demo.operator.access_token, demo.room_id)


class Seen:
    """What the test read from the live sources before the teardown."""

    def __init__(self) -> None:
        self.checked = False
        self.panes: dict[str, str] = {}
        self.events: list[dict[str, Any]] = []
        self.pids: dict[int, str] = {}


def assert_from_sources(demo: Demo, seen: Seen, leak_check: LeakCheck) -> None:
    assert demo.loaded is not None
    assert demo.nats is not None
    assert demo.synapse is not None
    assert demo.firewall is not None
    paths = demo.paths
    dev, rev = demo.agent_users["devbot"].user_id, demo.agent_users["reviewbot"].user_id

    # Every process of the run, so the leak check can prove they are gone afterwards.
    tmux = Tmux(demo.loaded.crew.runtime.tmux_socket)
    pids = {demo.synapse.pid: "synapse", demo.nats.pid: "nats-server", demo.firewall.pid: "firewall"}
    pids[run_dir(demo.loaded.crew).running_pid()] = "supervisor"
    pids[tmux.server_pid()] = "tmux server"
    for pane in tmux.pane_pids():
        pids[pane] = "tmux pane"
        for child in children_of(pane):
            pids[child] = "process in a pane"
    for pid, label in pids.items():
        assert pid is not None, label
        leak_check.track(pid, label)
    seen.pids = {pid: label for pid, label in pids.items() if pid is not None}

    # 1. Synapse: the operator's ask, devbot's 👀 on it and its reply.
    events = timeline(demo)
    messages = [e for e in events if e["type"] == "m.room.message"]
    assert demo.operator is not None
    [ask] = [e for e in messages if e["sender"] == demo.operator.user_id]
    assert ask["content"]["body"].startswith("@devbot please make count()")
    eyes = [
        e
        for e in events
        if e["type"] == "m.reaction"
        and e["sender"] == dev
        and e["content"]["m.relates_to"] == {"rel_type": "m.annotation", "event_id": ask["event_id"], "key": "👀"}
    ]
    assert len(eyes) == 1
    said = [(e["sender"], e["content"]["body"]) for e in messages]
    assert (dev, "On it: I'll fix count() on a branch and open a pull request.") in said
    # 2. The PR announcement names the reviewer (and mentions it, so its channel wakes it).
    [announced] = [e for e in messages if "opened a pull request for review" in e["content"]["body"]]
    assert announced["sender"] == dev
    assert rev in announced["content"]["m.mentions"]["user_ids"]
    assert PR_TITLE in announced["content"]["body"]
    # 4./5. The agents tell each other in the room.
    assert any(s == dev and "addressed your comment" in b for s, b in said)
    assert any(s == rev and b.startswith("@devbot approved example/widgets#1") for s, b in said)
    assert any(s == dev and b.startswith("Merged example/widgets#1.") for s, b in said)

    # The GitHub stand-in: one PR by devbot, commented inline then approved by reviewbot, merged by devbot.
    [pr] = [p for p in demo.world.all_pulls()]
    assert (pr.number, pr.author.login, pr.title, pr.state) == (1, "devbot", PR_TITLE, "MERGED")
    assert pr.merged_by is not None
    assert pr.merged_by.login == "devbot"
    assert [(r.author.login, r.state) for r in pr.reviews] == [("reviewbot", "COMMENTED"), ("reviewbot", "APPROVED")]
    [thread] = pr.threads
    assert (thread.path, thread.line, thread.comments[0].body) == (SOURCE_FILE, 6, REVIEW_COMMENT)
    assert pr.reviews[0].commit_id != pr.reviews[1].commit_id, "the fix was pushed between the reviews"
    bare = demo.root / "github" / "repos" / "example" / "widgets.git"
    main = subprocess.run(
        ["git", "--git-dir", str(bare), "show", f"main:{SOURCE_FILE}"], capture_output=True, text=True, check=True
    ).stdout
    assert "return len(ws or [])" in main
    test = subprocess.run(
        ["git", "--git-dir", str(bare), "show", f"main:{TEST_FILE}"], capture_output=True, text=True, check=True
    ).stdout
    assert "count(None) == 0" in test

    # The stream: pr_opened, two pr_reviewed, pr_merged, and the refusal as egress_denied.
    seen.events = stream(demo.nats.url, demo)
    kinds = [(e["type"], e["agent"], e.get("pr")) for e in seen.events]
    assert ("pr_opened", "devbot", 1) in kinds
    assert kinds.count(("pr_reviewed", "reviewbot", 1)) == 2
    assert ("pr_merged", "devbot", 1) in kinds
    assert any(
        e["type"] == "egress_denied" and e["agent"] == "devbot" and e["host"] == "hooks.slack.com" for e in seen.events
    )
    assert ("agent_started", "devbot", None) in kinds

    # The firewall's audit log: the push and the API calls went through it with the placeholder
    # swapped for each agent's own token; the non-allowlisted host was refused.
    audit = [json.loads(line) for line in FirewallState(paths.firewall).audit_log_path.read_text().splitlines()]
    host = demo.loaded.crew.forge.host
    assert any(
        a["agent"] == "devbot"
        and a["host"] == host
        and a["path"].endswith("/git-receive-pack")
        and a["swapped"] == ["github-devbot"]
        for a in audit
    )
    assert any(a["agent"] == "reviewbot" and a["swapped"] == ["github-reviewbot"] and a["status"] == 200 for a in audit)
    [refused] = [a for a in audit if a["host"] == "hooks.slack.com"]
    assert (refused["agent"], refused["decision"], refused["status"]) == ("devbot", "denied", 403)
    # The Stop hook re-woke devbot with the review.
    hooks_log = (paths.agent_state("devbot") / "hooks" / "hooks.log").read_text()
    assert "woke the agent" in hooks_log

    seen.panes = {name: tmux.capture(name, history=True) for name in ("devbot", "reviewbot")}
    assert "Opened example/widgets#1" in seen.panes["devbot"]
    seen.checked = True


def test_the_demo_plays_every_step_for_real_and_leaves_nothing(tmp_path: Path, leak_check: LeakCheck) -> None:
    seen = Seen()
    root = tmp_path / "run"
    record = run_demo(
        DemoOptions(directory=root, duration=170, step_timeout=90, env=demo_env(tmp_path)),
        before_teardown=lambda demo: assert_from_sources(demo, seen, leak_check),
    )
    assert seen.checked
    assert record["outcome"] == "complete", json.dumps(record, indent=2)
    assert all(record["steps"][s.value]["done_at"] is not None for s in Step)
    assert json.loads((root / "record.json").read_text())["complete"] is True
    # Every log the demo points at is there (a pane's as its chunks).
    missing = [what for what, where in record["logs"].items() if not glob.glob(where)]
    assert missing == [], record["logs"]

    # Nothing of the run is left: every tracked pid, and anything naming the run's directory.
    assert leak_check.survivors(grace=10) == {}
    assert processes_mentioning([str(root)]) == {}

    # The real tokens are in their secret files and nowhere else: no log, pane, event or request.
    tokens = {name: (root / "secrets" / f"github-{name}").read_text() for name in ("devbot", "reviewbot")}
    for name, token in tokens.items():
        assert files_containing(root, token, skip=[root / "secrets"]) == [], name
        assert all(token not in pane for pane in seen.panes.values()), name
        assert token not in json.dumps(seen.events), name
        assert token not in json.dumps(record), name
