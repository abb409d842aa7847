"""The agent's repositories: cloned when missing, fast-forwarded when behind, otherwise left alone.

Local work is never destroyed. A checkout with uncommitted changes or with
commits of its own that the remote does not have is not touched; the
outcome says why, and the caller turns it into a warning. A clone goes
into a temporary sibling directory and is renamed into place when
complete, so a killed clone never leaves a half-cloned repository behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from agent_smith.errors import MissingPartError, OperationError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
_PARTIAL = ".partial-clone-"
# A clone or fetch whose remote (or proxy) stops answering ends, instead of holding `assemble`
# and `up` for ever: git gives up below 1 KB/s for a minute, unless the environment says otherwise.
STALL_LIMITS = {"GIT_HTTP_LOW_SPEED_LIMIT": "1000", "GIT_HTTP_LOW_SPEED_TIME": "60"}


class RepoAction(StrEnum):
    cloned = "cloned"
    fast_forwarded = "fast-forwarded"
    up_to_date = "up to date"
    left_alone = "left alone"
    would_clone = "would clone"
    would_update = "would fetch, and fast-forward if behind"


@dataclass(frozen=True)
class RepoOutcome:
    repo: str
    path: Path
    action: RepoAction
    reason: str = ""

    @property
    def changed(self) -> bool:
        return self.action in (RepoAction.cloned, RepoAction.fast_forwarded)

    @property
    def warning(self) -> str | None:
        if self.action is RepoAction.left_alone:
            return f"{self.repo}: left as it is at {self.path}: {self.reason}"
        return None


def _git() -> str:
    found = shutil.which("git")
    if found is None:
        raise MissingPartError("git is not installed (apt-get install git)")
    return found


def _run(args: list[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_git(), *args], env=dict(env), cwd=cwd, capture_output=True, text=True, check=False, timeout=120
        )
    except subprocess.TimeoutExpired as exc:
        raise OperationError(f"git {args[0]} in {cwd} did not finish within 120s") from exc


def head_of(checkout: Path, env: Mapping[str, str]) -> str | None:
    """The commit checked out in `checkout`, or None when it is not a git checkout."""
    if not checkout.is_dir():
        return None
    result = _run(["rev-parse", "HEAD"], env, cwd=checkout)
    return result.stdout.strip() if result.returncode == 0 else None


def _streamed(args: list[str], env: Mapping[str, str], progress: Progress | None, cwd: Path | None = None) -> str:
    """Run git with `--progress`, forwarding its progress output as it comes; the whole of it is returned."""
    proc = subprocess.Popen(
        [_git(), *args], env={**STALL_LIMITS, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert proc.stderr is not None
    chunks: list[bytes] = []
    try:
        while chunk := os.read(proc.stderr.fileno(), 4096):
            chunks.append(chunk)
            if progress is not None:
                progress(chunk.decode(errors="replace"))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stderr.close()
    code = proc.wait()
    text = b"".join(chunks).decode(errors="replace")
    if code != 0:
        raise subprocess.CalledProcessError(code, args, stderr=text)
    return text


@dataclass(frozen=True)
class FirewallRecords:
    """Where the egress firewall writes why it did not carry a connection. A refused clone's error
    quotes it: git says only the status, and the event log (`egress_denied`) stops with a failed `up`."""

    agent: str
    audit_log: Path
    log: Path

    def reason(self, host: str, status: str) -> str | None:
        """Why the firewall last answered `status` to this agent's CONNECT to `host`, from the audit
        log's tail (written before the answer, so already there when git fails); None if not found."""
        try:
            with self.audit_log.open("rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - _AUDIT_TAIL))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return None
        return refusal_reason(tail.splitlines(), self.agent, host, status)


# Enough of the audit log for the lines of one clone's refusal, however long the log has grown.
_AUDIT_TAIL = 64 * 1024


def refusal_reason(lines: list[str], agent: str, host: str, status: str) -> str | None:
    """The reason of the last audit line refusing `agent`'s CONNECT to `host` with `status` (pure)."""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # the first line of a tail, cut in the middle
        if (
            isinstance(entry, dict)
            and entry.get("method") == "CONNECT"
            and entry.get("decision") == "denied"
            and (entry.get("agent"), entry.get("host"), str(entry.get("status"))) == (agent, host, status)
        ):
            reason = entry.get("reason")
            return str(reason) if reason else None
    return None


def _last_line(text: str, host: str | None, firewall: FirewallRecords | None) -> str:
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    line = (fatal or lines or ["no output"])[-1]
    refused = _TUNNEL_REFUSED.search(line)
    if refused is None:
        return line
    status = refused[1]
    why = firewall.reason(host, status) if firewall is not None and host else None
    return with_proxy_hint(line, status, why, firewall.log if firewall is not None else None)


_TUNNEL_REFUSED = re.compile(r"CONNECT tunnel failed, response (\d{3})")
# What the egress firewall means by each answer to a CONNECT it does not carry out (git says only the status).
_PROXY_MEANINGS = {
    "403": "the egress firewall refused it",
    "502": "the egress firewall could not reach the host",
}


def with_proxy_hint(line: str, status: str, why: str | None, firewall_log: Path | None) -> str:
    """`line`, git's last word on a CONNECT answered `status`, with what the firewall meant: its reason
    when the audit log had it, else the log that says it (pure)."""
    if status == "407":
        return f"{line} (the egress firewall did not take the agent's proxy password)"
    meaning = _PROXY_MEANINGS.get(status)
    if meaning is None:
        return line
    if why:
        return f"{line} ({meaning}: {why})"
    return f"{line} ({meaning}: its log {firewall_log} says why)" if firewall_log else f"{line} ({meaning})"


def sync_repo(
    repo: str,
    url: str,
    dest: Path,
    env: Mapping[str, str],
    *,
    progress: Progress | None = None,
    dry_run: bool = False,
    firewall: FirewallRecords | None = None,
) -> RepoOutcome:
    """Clone `url` to `dest`, or bring an existing clean checkout up to its upstream; a failure through
    the egress firewall says its reason, read from `firewall`."""
    if not dest.exists() or (dest.is_dir() and not any(dest.iterdir())):
        if dry_run:
            return RepoOutcome(repo, dest, RepoAction.would_clone)
        _clone(repo, url, dest, env, progress, firewall)
        return RepoOutcome(repo, dest, RepoAction.cloned)
    top = _run(["rev-parse", "--show-toplevel"], env, cwd=dest) if dest.is_dir() else None
    if top is None or top.returncode != 0 or Path(top.stdout.strip()).resolve() != dest.resolve():
        return RepoOutcome(repo, dest, RepoAction.left_alone, "it is not a git checkout")
    if dry_run:
        return RepoOutcome(repo, dest, RepoAction.would_update)
    try:
        _streamed(["fetch", "--progress", "--prune", "origin"], env, progress, cwd=dest)
    except subprocess.CalledProcessError as exc:
        return RepoOutcome(
            repo,
            dest,
            RepoAction.left_alone,
            f"fetch failed: {_last_line(exc.stderr, urlsplit(url).hostname, firewall)}",
        )
    upstream = _run(["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{u}"], env, cwd=dest)
    if upstream.returncode != 0:
        return RepoOutcome(repo, dest, RepoAction.left_alone, "the checked-out branch has no upstream")
    counts = _run(["rev-list", "--left-right", "--count", "HEAD...@{u}"], env, cwd=dest)
    ahead, behind = (int(n) for n in counts.stdout.split())
    if behind == 0:
        return RepoOutcome(repo, dest, RepoAction.up_to_date, f"{ahead} local commits not pushed" if ahead else "")
    if ahead:
        return RepoOutcome(
            repo,
            dest,
            RepoAction.left_alone,
            f"diverged from {upstream.stdout.strip()} ({ahead} local, {behind} remote commits)",
        )
    dirty = _run(["status", "--porcelain"], env, cwd=dest).stdout.strip()
    if dirty:
        count = len(dirty.splitlines())
        return RepoOutcome(repo, dest, RepoAction.left_alone, f"{count} uncommitted changes; {behind} commits behind")
    merged = _run(["merge", "--ff-only", "@{u}"], env, cwd=dest)
    if merged.returncode != 0:
        return RepoOutcome(
            repo, dest, RepoAction.left_alone, f"fast-forward failed: {_last_line(merged.stderr, None, None)}"
        )
    return RepoOutcome(repo, dest, RepoAction.fast_forwarded, f"{behind} new commit{'' if behind == 1 else 's'}")


def _clone(
    repo: str, url: str, dest: Path, env: Mapping[str, str], progress: Progress | None, firewall: FirewallRecords | None
) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    for leftover in dest.parent.glob(f".{dest.name}{_PARTIAL}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    partial = dest.parent / f".{dest.name}{_PARTIAL}{os.getpid()}"
    log.info("cloning %s into %s", repo, dest)
    try:
        _streamed(["clone", "--progress", "--", url, str(partial)], env, progress)
    except subprocess.CalledProcessError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        line = _last_line(exc.stderr, urlsplit(url).hostname, firewall)
        raise OperationError(f"cannot clone {repo} from {url}: {line}") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if dest.exists():
        dest.rmdir()
    os.replace(partial, dest)
