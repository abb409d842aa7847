"""`status` shows each agent's open PRs as its Stop hook last saw them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.scaffold import scaffolded_crew

CLI = Path(sys.executable).parent / "agent-smith"


def test_status_lists_open_prs_and_those_awaiting_the_agent(tmp_path: Path) -> None:
    crew, hooks = scaffolded_crew(tmp_path, "st")
    (hooks / "activity.json").write_text(
        json.dumps(
            {
                "checked_at": "2026-11-25T12:00:00+00:00",
                "pull_requests": [
                    {"repo": "example/widgets", "number": 3, "title": "Fix", "url": "u3", "unaddressed": 2},
                    {"repo": "example/widgets", "number": 4, "title": "Docs", "url": "u4", "unaddressed": 0},
                ],
            }
        )
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "COLUMNS": "200"}
    result = subprocess.run(
        [str(CLI), "status", "--crew", str(crew), "--json"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    rows = {row["agent"]: row for row in json.loads(result.stdout)["agents"]}
    assert [pr["number"] for pr in rows["devbot"]["open_prs"]] == [3, 4]
    assert rows["devbot"]["open_prs_checked_at"] == "2026-11-25T12:00:00+00:00"
    assert rows["reviewbot"]["open_prs"] is None
    table = subprocess.run(
        [str(CLI), "status", "--crew", str(crew)], capture_output=True, text=True, env=env, check=False
    )
    assert "2 (1 awaiting it)" in table.stdout
    assert "stale" not in table.stdout

    # The checks fail since: the PRs shown are the last found, said to be stale, and why.
    activity = json.loads((hooks / "activity.json").read_text())
    activity |= {"failing_since": "2026-11-25T12:05:00+00:00", "failure": "OperationError: GitHub answered 502"}
    (hooks / "activity.json").write_text(json.dumps(activity))
    result = subprocess.run(
        [str(CLI), "status", "--crew", str(crew), "--json"], capture_output=True, text=True, env=env, check=False
    )
    rows = {row["agent"]: row for row in json.loads(result.stdout)["agents"]}
    assert (rows["devbot"]["open_prs_failing_since"], rows["devbot"]["open_prs_failure"]) == (
        "2026-11-25T12:05:00+00:00",
        "OperationError: GitHub answered 502",
    )
    table = subprocess.run(
        [str(CLI), "status", "--crew", str(crew)], capture_output=True, text=True, env=env, check=False
    )
    assert "2 (1 awaiting it), stale" in table.stdout
    assert table.stderr == (
        "warning: devbot: its review checks fail since 2026-11-25T12:05:00+00:00 (OperationError: GitHub "
        "answered 502); its open PRs are as of 2026-11-25T12:00:00+00:00\n"
    )
