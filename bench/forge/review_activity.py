"""Review-activity check: one GraphQL round trip vs one `gh pr view` process per PR.

An agent has 20 open pull requests, each with a review and two inline threads.
Both approaches run side by side against the same GitHub stand-in (HTTPS on
loopback port 443), alternating, several rounds; medians and ratios printed.

    baseline   the original watcher: `gh pr view N --comments` for each PR, one
               process after another (the listing call it also needed is left
               out, which flatters the baseline)
    in-process ForgeClient.review_activity: a new client (TLS handshake
               included) and one GraphQL request
    process    the same in a fresh Python process, as a Stop hook runs it
               (interpreter start and imports included)

Run as root (port 443): .venv/bin/python bench/forge/review_activity.py [rounds]
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_smith.errors import OperationError
from agent_smith.forge import ForgeClient, unaddressed
from agent_smith.standins.github import GitHubStandin, InlineComment

PRS = 20
REPO = "carol/widgets"

HOOK = """
import asyncio, os, sys
from agent_smith.forge import ForgeClient, unaddressed
async def main():
    async with ForgeClient.from_env(api_url=sys.argv[1], graphql_url=sys.argv[2]) as c:
        print(len(unaddressed(await c.review_activity("alice", ["carol/widgets"]))))
asyncio.run(main())
"""


def start(root: Path) -> GitHubStandin:
    rng = random.Random(secrets.randbits(64))
    for _ in range(30):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        try:
            return GitHubStandin(root, host=host, port=443).start()
        except OperationError:
            continue
    sys.exit("no loopback address had port 443 free (run as root)")


def seed(standin: GitHubStandin) -> dict[str, str]:
    world = standin.world
    tokens = {login: f"ghp_{secrets.token_hex(18)}" for login in ("alice", "bob", "carol")}
    users = {login: world.add_user(login, token) for login, token in tokens.items()}
    repo = world.add_repo("carol", "widgets", collaborators=("alice", "bob"))
    for n in range(PRS):
        body = "".join(f"value_{i} = {i * n}\n" for i in range(12))
        repo.git.commit_files(
            f"topic-{n}", {f"src/m{n}.py": body}, f"topic {n}", users["alice"].identity, start_point="main"
        )
        pr = world.open_pull(
            repo, users["alice"], head=f"topic-{n}", base="main", title=f"Topic {n}", body="Please review."
        )
        world.review(
            pr,
            users["bob"],
            "COMMENT",
            "A few questions.",
            (
                InlineComment(f"src/m{n}.py", 3, "Why this value?"),
                InlineComment(f"src/m{n}.py", 9, "Could this be a constant?"),
            ),
        )
        world.comment(pr, users["carol"], "Is this needed for the release?")
    return tokens


def gh_env(standin: GitHubStandin, token: str, home: Path) -> dict[str, str]:
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "GH_CONFIG_DIR": str(home / "gh"),
        "GH_HOST": standin.hostname,
        "GH_ENTERPRISE_TOKEN": token,
        "GH_PROMPT_DISABLED": "1",
        "GH_NO_UPDATE_NOTIFIER": "1",
        "NO_COLOR": "1",
        "SSL_CERT_FILE": str(standin.ca_path),
    }


def baseline(standin: GitHubStandin, env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    for n in range(1, PRS + 1):
        subprocess.run(
            ["gh", "pr", "view", str(n), "--comments", "-R", f"{standin.hostname}/{REPO}"],
            env=env,
            cwd=cwd,
            capture_output=True,
            check=True,
        )
    return time.perf_counter() - started


async def in_process(standin: GitHubStandin, token: str) -> float:
    started = time.perf_counter()
    env = {"GITHUB_TOKEN": token, "SSL_CERT_FILE": str(standin.ca_path)}
    async with ForgeClient.from_env(api_url=standin.api_url, graphql_url=standin.graphql_url, env=env) as client:
        items = unaddressed(await client.review_activity("alice", [REPO]))
    elapsed = time.perf_counter() - started
    assert len(items) == PRS * 4, len(items)  # review + two threads + a comment per PR
    return elapsed


def fresh_process(standin: GitHubStandin, token: str, cwd: Path) -> float:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "GITHUB_TOKEN": token,
        "SSL_CERT_FILE": str(standin.ca_path),
        "HOME": str(cwd),
    }
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", HOOK, standin.api_url, standin.graphql_url],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    elapsed = time.perf_counter() - started
    assert out.stdout.strip() == str(PRS * 4), out.stdout
    return elapsed


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        standin = start(root / "github")
        try:
            tokens = seed(standin)
            env = gh_env(standin, tokens["alice"], root / "home")
            base_times: list[float] = []
            inproc_times: list[float] = []
            proc_times: list[float] = []
            baseline(standin, env, root)  # warm caches on both sides once
            asyncio.run(in_process(standin, tokens["alice"]))
            for _ in range(rounds):
                base_times.append(baseline(standin, env, root))
                inproc_times.append(asyncio.run(in_process(standin, tokens["alice"])))
                proc_times.append(fresh_process(standin, tokens["alice"], root))
            requests_gh = sum(
                1 for e in standin.exchanges if e.kind == "graphql" and e.template == "PullRequestByNumber"
            )
        finally:
            standin.stop()
    base, inproc, proc = (statistics.median(x) for x in (base_times, inproc_times, proc_times))
    print(f"review activity for {PRS} open PRs (2 threads, 1 review, 1 comment each), median of {rounds} rounds")
    print(
        f"  baseline: {PRS} x `gh pr view --comments`  {base * 1000:8.1f} ms  "
        f"({requests_gh // (rounds + 1)} GraphQL requests per check)"
    )
    print(f"  review_activity, in process          {inproc * 1000:8.1f} ms  (1 GraphQL request)")
    print(f"  review_activity, fresh process       {proc * 1000:8.1f} ms  (1 GraphQL request)")
    print(f"  ratio baseline / in process:    {base / inproc:6.1f}x")
    print(f"  ratio baseline / fresh process: {base / proc:6.1f}x")


if __name__ == "__main__":
    main()
