"""`agent-smith events …` through the real entry point, against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent_smith.cli.app import app
from agent_smith.crew import scaffold_crew
from agent_smith.events import EgressDenied, EmbeddedNats, Event, PrOpened, PrReviewed, Publisher, TaskDone
from agent_smith.listeners import free_port
from tests.events.helpers import SETTINGS, plain_nats
from tests.fixtures.nats import NatsServer
from tests.fixtures.processes import LeakCheck

pytestmark = pytest.mark.real

runner = CliRunner()
AGENT_SMITH = Path(sys.executable).parent / "agent-smith"
PR = ["-f", "repo=acme/web", "-f", "pr=7", "-f", "title=Add login", "-f", "url=https://github.com/acme/web/pull/7"]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str | None]:
    """No crew here: the CLI runs on NATS_URL and an outbox in tmp."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("AGENT_", "NATS_")):
            monkeypatch.delenv(name)
    return {"AGENT_SMITH_EVENTS_OUTBOX": str(tmp_path / "outbox"), "AGENT_NAME": "devbot"}


def invoke(args: list[str], env: dict[str, str | None]) -> tuple[int, str, str]:
    result = runner.invoke(app, args, env=env)
    return result.exit_code, result.stdout, result.stderr


def test_publish_then_query(nats_server: NatsServer, env: dict[str, str | None]) -> None:
    env = {**env, "NATS_URL": nats_server.url}
    code, out, err = invoke(["events", "publish", "pr_opened", *PR], env)
    assert code == 0, err
    assert out.startswith("published pr_opened ")
    assert "(stream sequence 1)" in out
    invoke(["events", "publish", "task_done", "-f", "summary=tidied", "--agent", "reviewbot"], env)

    code, out, err = invoke(["events", "query", "--json"], env)
    assert code == 0, err
    events = json.loads(out)
    assert [(e["type"], e["agent"]) for e in events] == [("pr_opened", "devbot"), ("task_done", "reviewbot")]
    assert events[0] | {"id": "", "time": ""} == {
        "id": "",
        "time": "",
        "action": "pr_opened",
        "type": "pr_opened",
        "schema_version": 1,
        "agent": "devbot",
        "repo": "acme/web",
        "pr": 7,
        "title": "Add login",
        "url": "https://github.com/acme/web/pull/7",
    }

    code, out, _ = invoke(["events", "query", "--agent", "devbot", "--repo", "acme/web", "--pr", "7"], env)
    assert code == 0
    assert out.splitlines()[0].strip() == "1 event"
    assert "acme/web#7" in out
    assert "Add login" in out
    assert "tidied" not in out
    # An agent's text cannot drive the terminal: control characters are shown, not sent.
    invoke(
        ["events", "publish", "task_done", "-f", "summary=red \x1b[31mALERT\x1b]0;pwned\x07", "--agent", "devbot"], env
    )
    code, out, _ = invoke(["events", "query", "--type", "task_done", "--agent", "devbot"], env)
    assert code == 0
    assert "\x1b" not in out
    assert "\x07" not in out
    assert "\ufffd[31mALERT" in out

    code, out, _ = invoke(["events", "query", "--type", "task_done", "--since", "1h", "--json"], env)
    assert [e["summary"] for e in json.loads(out)] == ["tidied", "red \x1b[31mALERT\x1b]0;pwned\x07"]
    code, out, _ = invoke(["events", "query", "--limit", "1", "--json"], env)
    assert [e["type"] for e in json.loads(out)] == ["task_done"]


def publish_all(url: str, outbox: Path, events: list[Event]) -> None:
    async def run() -> None:
        async with Publisher(SETTINGS, outbox, url) as publisher:
            assert await publisher.wait_connected(10)
            for event in events:
                assert (await publisher.publish(event)).stored

    asyncio.run(run())


WIDGET = {"repo": "example/widget", "pr": 12, "url": "https://github.com/example/widget/pull/12"}
TITLE = "Retry the fetch when the server answers 503"
# As the hooks and the firewall publish them (the reason is the firewall's wording).
TEAM_EVENTS: list[Event] = [
    PrOpened(agent="devbot", title=TITLE, base="main", head="dev/retry", **WIDGET),
    PrReviewed(agent="reviewbot", title=TITLE, state="changes_requested", comments=2, **WIDGET),
    # A review published before the state was shown, and before `comments` could be absent.
    PrReviewed(agent="reviewbot", title=TITLE, state="commented", comments=0, schema_version=1, **WIDGET),
    PrReviewed(agent="reviewbot", title=TITLE, state="approved", comments=0, **WIDGET),
    EgressDenied(
        agent="devbot",
        host="raw.githubusercontent.com",
        method="GET",
        path="/example/widget/main/install.sh",
        reason="host raw.githubusercontent.com:443 is not on the allowlist",
    ),
    EgressDenied(
        agent="devbot",
        host="api.anthropic.com",
        reason="host api.anthropic.com:443 is not on the allowlist",
        repeated=3,
    ),
    TaskDone(agent="devbot", summary="tidied the fixtures", repo="example/widget"),
]


def column_text(table: str, column: int) -> str:
    """One column of a boxed table's body, its lines joined by spaces: a word wrapped whole reads
    as it was; one cut or folded mid-way does not."""
    body = table.split("┩", 1)[1]
    cells = [line.split("│")[column + 1].strip() for line in body.splitlines() if line.startswith("│")]
    return " ".join(cell for cell in cells if cell)


@pytest.mark.parametrize("columns", [80, 120])
def test_query_shows_what_matters_whole_at_any_width(
    nats_server: NatsServer, env: dict[str, str | None], tmp_path: Path, columns: int
) -> None:
    publish_all(nats_server.url, tmp_path / "outbox", TEAM_EVENTS)
    code, out, err = invoke(["events", "query"], {**env, "NATS_URL": nats_server.url, "COLUMNS": str(columns)})
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= columns
    assert "…" not in out
    # Where: whole, on a line of its own cell (never folded at these widths).
    assert out.count("example/widget#12 ") == 4
    for where in ("raw.githubusercontent.com:443", "api.anthropic.com:443", "example/widget "):
        assert where in out
    what = column_text(out, 2 if columns == 80 else 4)
    for said in (
        f"changes requested, 2 inline comments: {TITLE}",
        f"commented: {TITLE}",
        f"approved: {TITLE}",
        "host raw.githubusercontent.com:443 is not on the allowlist",
        "host api.anthropic.com:443 is not on the allowlist (3 more like it)",
        "tidied the fixtures",
    ):
        assert said in what
    if columns == 80:
        # Too narrow for five columns: the agent goes under the type, what happened under where.
        assert column_text(out, 1).split() == [word for e in TEAM_EVENTS for word in (e.type, e.agent)]
    else:
        assert column_text(out, 2).split() == [e.agent for e in TEAM_EVENTS]


def test_a_host_longer_than_its_column_is_folded_not_cut(
    nats_server: NatsServer, env: dict[str, str | None], tmp_path: Path
) -> None:
    host = "artifacts-prod-eu-central-1.s3.eu-central-1.amazonaws.com"
    denied = EgressDenied(agent="devbot", host=host, reason=f"host {host}:443 is not on the allowlist")
    publish_all(nats_server.url, tmp_path / "outbox", [denied])
    code, out, err = invoke(["events", "query"], {**env, "NATS_URL": nats_server.url, "COLUMNS": "80"})
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "…" not in out
    assert f"{host}:443" in column_text(out, 2).replace(" ", "")


def test_tail_says_a_review_s_state(nats_server: NatsServer, env: dict[str, str | None], tmp_path: Path) -> None:
    publish_all(nats_server.url, tmp_path / "outbox", TEAM_EVENTS)
    args = ["events", "tail", "--type", "pr_reviewed", "--since", "1h", "--count", "3"]
    code, out, err = invoke(args, {**env, "NATS_URL": nats_server.url})
    assert code == 0, err
    said = [line.split(" ", 2)[2] for line in out.splitlines()]  # after the time and the type
    assert said == [
        f"reviewbot example/widget#12 {state}: {TITLE}"
        for state in ("changes requested, 2 inline comments", "commented", "approved")
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["events", "publish", "pr_exploded"], "error: unknown event type 'pr_exploded' (known: "),
        (["events", "publish", "pr_opened", *PR[:6]], "error: pr_opened: missing field 'url'"),
        (["events", "publish", "pr_opened", *PR, "-f", "pr=8"], "error: --field 'pr' is given twice"),
        (["events", "publish", "task_done", "-f", "summary"], "error: --field 'summary': expected key=value"),
        (["events", "publish", "task_done", "-f", "summary=x", "--agent", "Bad Name"], "error: agent: 'Bad Name'"),
        (["events", "query", "--since", "last week"], "error: --since: 'last week' is neither a time"),
        (["events", "query", "--type", "nope"], "error: unknown event type 'nope'"),
        (["events", "query", "--agent", "*"], "error: agent: '*' is not an agent name"),
        (["events", "query", "--repo", "notarepo"], "error: repo: 'notarepo' is not a repository as owner/name"),
        (["events", "tail", "--repo", "acme"], "error: repo: 'acme' is not a repository as owner/name"),
        (
            ["events", "publish", "task_done", "-f", "summary=x", "--wait", "-1"],
            "error: Invalid value for '--wait': Input should be greater than or equal to 0",
        ),
        (
            ["events", "query"],
            "error: no event log: name a crew (--crew, AGENT_SMITH_CREW) or a NATS server (NATS_URL)",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_two(env: dict[str, str | None], args: list[str], message: str) -> None:
    code, out, err = invoke(args, env)
    assert code == 2
    assert err.startswith(message), err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in out + err


@pytest.mark.parametrize("url", ["foo://", "nats://", "not a url", "nats://n:99999"])
def test_a_nats_url_no_client_can_use_is_one_line_and_exit_two(env: dict[str, str | None], url: str) -> None:
    # Events sent to it would wait in the outbox for a server that can never be.
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=x"], {**env, "NATS_URL": url})
    assert code == 2
    assert err == f"error: NATS_URL: {url!r} is no NATS server URL (nats://host:port, tls://, ws:// or wss://)\n"
    assert out == ""


def test_publish_without_an_agent_is_refused(env: dict[str, str | None]) -> None:
    code, _, err = invoke(["events", "publish", "task_done", "-f", "summary=x"], {**env, "AGENT_NAME": None})
    assert code == 2
    assert "--agent is required" in err


def test_a_crew_refuses_a_publisher_it_does_not_have_and_keeps_nothing(
    tmp_path: Path, env: dict[str, str | None]
) -> None:
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    outbox = tmp_path / "outbox"
    env = {**env, "AGENT_NAME": None, "AGENT_SMITH_CREW": str(crew)}
    for args in (["events", "publish", "task_done", "-f", "summary=x"], ["mcp", "events"]):
        code, out, err = invoke([*args, "--agent", "ghost"], env)
        assert (code, out) == (2, ""), err
        assert err == "error: unknown agent 'ghost' (the crew has: devbot, reviewbot)\n"
    assert not outbox.exists() or not any(outbox.iterdir())


def test_a_dead_nats_warns_keeps_the_event_and_the_next_publisher_sends_it(
    nats_server: NatsServer, env: dict[str, str | None], tmp_path: Path
) -> None:
    env = {**env, "NATS_URL": nats_server.url}
    nats_server.stop()
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=while down", "--wait", "0.2"], env)
    assert code == 0
    assert out == ""
    assert err.startswith("warning: NATS unreachable")
    assert len(err.strip().splitlines()) == 1
    assert "kept in the outbox" in err
    assert "Traceback" not in err
    assert len(list((tmp_path / "outbox").glob("seg-*.log"))) == 1

    nats_server.start()
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=after"], env)
    assert code == 0, err
    code, out, _ = invoke(["events", "query", "--json"], env)
    assert [e["summary"] for e in json.loads(out)] == ["while down", "after"]
    assert list((tmp_path / "outbox").glob("seg-*.log")) == []


def test_an_event_nats_refuses_is_one_line_and_is_not_kept(
    nats_server: NatsServer, env: dict[str, str | None], tmp_path: Path
) -> None:
    env = {**env, "NATS_URL": nats_server.url}
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=" + "x" * (1 << 20)], env)
    assert code == 1
    assert out == ""
    assert err.startswith("error: NATS refused event ")
    assert err.strip().endswith("MaxPayloadError: nats: maximum payload exceeded")
    assert len(err.strip().splitlines()) == 1
    assert list((tmp_path / "outbox").glob("seg-*.log")) == []
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=next"], env)
    assert code == 0, err
    assert out.startswith("published task_done ")


def test_a_crew_finds_its_embedded_server(tmp_path: Path, env: dict[str, str | None], leak_check: LeakCheck) -> None:
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    state = tmp_path / "state"
    with (crew / "crew.yaml").open("a") as fh:
        fh.write(f"runtime:\n  state_dir: {state}\n")
    env = {**env, "AGENT_SMITH_EVENTS_OUTBOX": None, "AGENT_SMITH_CREW": str(crew)}
    code, _, err = invoke(["events", "query"], env)
    assert code == 1, "a crew that is down is a failure, as an unreachable server is"
    assert "no NATS server" in err
    # A range that ends before it begins is a mistake, said as one.
    code, _, err = invoke(["events", "query", "--since", "1h", "--until", "2h"], env)
    assert (code, err) == (2, "error: --until 2h is before --since 1h: nothing can be found between them\n")

    server = EmbeddedNats(state / "example-crew" / "nats")
    try:
        server.start()
        assert server.pid is not None
        leak_check.track(server.pid, "embedded nats-server")
        code, out, err = invoke(
            ["events", "publish", "incident", "-f", "summary=disk full", "-f", "severity=high"], env
        )
        assert code == 0, err
        code, out, err = invoke(["events", "query", "--type", "incident", "--json"], env)
        assert code == 0, err
        assert json.loads(out)[0]["summary"] == "disk full"
    finally:
        server.stop()


def test_tail_prints_events_as_they_arrive(nats_server: NatsServer, tmp_path: Path, leak_check: LeakCheck) -> None:
    child_env = {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "HOME": str(tmp_path),
        "NATS_URL": nats_server.url,
    }

    async def seed() -> None:
        async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
            assert await publisher.wait_connected(10)
            await publisher.publish(TaskDone(agent="devbot", summary="before the tail"))

    asyncio.run(seed())
    tail = subprocess.Popen(
        [str(AGENT_SMITH), "events", "tail", "--agent", "devbot", "--count", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=child_env,
    )
    leak_check.track(tail.pid, "events tail")
    try:
        # The tail starts from "now": publish until it has seen two new events.
        async def feed() -> None:
            async with Publisher(SETTINGS, tmp_path / "outbox", nats_server.url) as publisher:
                assert await publisher.wait_connected(10)
                n = 0
                while tail.poll() is None and n < 200:
                    n += 1
                    await publisher.publish(TaskDone(agent="reviewbot", summary="not followed"))
                    await publisher.publish(TaskDone(agent="devbot", summary=f"live {n}"))
                    await asyncio.sleep(0.05)

        asyncio.run(feed())
        out, err = tail.communicate(timeout=20)
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()
    assert tail.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2
    assert all(e["agent"] == "devbot" and e["summary"].startswith("live ") for e in lines)


def test_unreachable_nats_for_query_is_one_line(env: dict[str, str | None]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    code, _, err = invoke(["events", "query"], {**env, "NATS_URL": url})
    assert code == 1
    assert err.startswith(f"error: cannot reach NATS at {url}")
    assert len(err.strip().splitlines()) == 1


def test_a_password_in_nats_url_is_never_shown(env: dict[str, str | None]) -> None:
    dead = f"nats://crew:SuperSecretPw42@127.0.0.1:{free_port()}"
    code, _, err = invoke(
        ["events", "publish", "task_done", "-f", "summary=x", "--wait", "0.2"], {**env, "NATS_URL": dead}
    )
    assert code == 0
    assert err.startswith(f"warning: NATS unreachable at {dead.replace('SuperSecretPw42', '***')} (")
    code, _, err = invoke(["events", "query"], {**env, "NATS_URL": dead})
    assert code == 1
    assert "SuperSecretPw42" not in err
    assert "crew:***@127.0.0.1" in err


def test_a_nats_url_listing_servers_reaches_one_of_them(nats_server: NatsServer, env: dict[str, str | None]) -> None:
    env = {**env, "NATS_URL": f"nats://127.0.0.1:{free_port()},{nats_server.url}"}
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=listed"], env)
    assert code == 0, err
    assert "(stream sequence 1)" in out
    code, out, err = invoke(["events", "query", "--json"], env)
    assert code == 0, err
    assert [e["summary"] for e in json.loads(out)] == ["listed"]


def test_a_server_without_jetstream_is_named_as_such(env: dict[str, str | None], leak_check: LeakCheck) -> None:
    with plain_nats(leak_check) as port:
        url = f"nats://127.0.0.1:{port}"
        env = {**env, "NATS_URL": url}
        code, _, err = invoke(["events", "publish", "task_done", "-f", "summary=x", "--wait", "0.5"], env)
        assert code == 0
        assert err.startswith(f"warning: JetStream is not enabled on {url}: task_done ")
        for verb in ("query", "tail"):
            code, _, err = invoke(["events", verb], env)
            assert (code, err) == (1, f"error: JetStream is not enabled on {url}\n")


def test_a_refused_login_is_named_as_such(env: dict[str, str | None], leak_check: LeakCheck) -> None:
    with plain_nats(leak_check, "--user", "crew", "--pass", "RightPw42") as port:
        env = {**env, "NATS_URL": f"nats://crew:WrongPw42@127.0.0.1:{port}"}
        said = f"NATS at nats://crew:***@127.0.0.1:{port} refused the credentials (authorization violation)"
        code, _, err = invoke(["events", "publish", "task_done", "-f", "summary=x", "--wait", "2"], env)
        assert code == 0
        assert err.startswith(f"warning: {said}: task_done ")
        code, _, err = invoke(["events", "query"], env)
        assert (code, err) == (1, f"error: {said}\n")


def test_publishing_while_the_crew_is_down_says_its_event_log_does_not_run(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    crew = tmp_path / "crew"
    scaffold_crew(crew)
    (crew / "crew.yaml").write_text(
        (crew / "crew.yaml").read_text() + f"\nruntime:\n  state_dir: {tmp_path / 'state'}\n"
    )
    env = {**env, "NATS_URL": None, "AGENT_SMITH_CREW": str(crew)}
    code, out, err = invoke(["events", "publish", "task_done", "-f", "summary=x", "--agent", "devbot"], env)
    assert (code, out) == (0, ""), err
    assert err.startswith("warning: the crew's event log does not run (`agent-smith up` starts it): task_done ")
    assert len(err.strip().splitlines()) == 1
