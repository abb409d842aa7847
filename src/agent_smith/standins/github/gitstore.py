"""The stand-in's git storage: one bare repository per GitHub repository.

Everything a pull request shows (head commit, diff, counts, mergeability) is
read from git when asked, so a `git push` is visible at once, as on GitHub.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agent_smith.errors import OperationError

__all__ = ["ChangedFile", "DiffStats", "GitStore", "Identity"]

_DIFF_CACHE = 512  # diffs kept per repository
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class ChangedFile:
    path: str
    additions: int
    deletions: int
    change_type: str  # GitHub's PatchStatus: ADDED, DELETED, MODIFIED, …


@dataclass(frozen=True)
class DiffStats:
    additions: int
    deletions: int
    changed_files: int
    commits: int


class GitStore:
    """A bare repository driven through git plumbing (no work tree, no hooks)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._diffs: dict[tuple[str, str, int], str] = {}

    def _git(self, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> str:
        full_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.path),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_DIR": str(self.path),
            **(env or {}),
        }
        proc = subprocess.run(["git", *args], input=stdin, capture_output=True, env=full_env, check=False)
        if proc.returncode != 0:
            raise OperationError(f"git {args[0]} in {self.path.name}: {proc.stderr.decode(errors='replace').strip()}")
        return proc.stdout.decode(errors="replace")

    def init(self, default_branch: str) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self._git("init", "--bare", "-q", f"--initial-branch={default_branch}", str(self.path))
        # git http-backend serves pushes only with this on when REMOTE_USER is set;
        # keep it explicit so the behaviour does not hang on git's defaults.
        self._git("config", "http.receivepack", "true")

    def commit_files(
        self,
        branch: str,
        files: dict[str, str],
        message: str,
        author: Identity,
        *,
        start_point: str | None = None,
    ) -> str:
        """Commit ``files`` (path → text) on top of ``branch``; a missing branch starts
        at ``start_point`` (a branch name), or as a first, parentless commit."""
        old = self.rev_parse(branch)
        parent = old or (self.rev_parse(start_point) if start_point else None)
        index = self.path / "standin-index"
        env = {"GIT_INDEX_FILE": str(index)}
        try:
            if parent:
                self._git("read-tree", parent, env=env)
            else:
                self._git("read-tree", "--empty", env=env)
            for name, text in files.items():
                blob = self._git("hash-object", "-w", "--stdin", stdin=text.encode()).strip()
                self._git("update-index", "--add", "--cacheinfo", f"100644,{blob},{name}", env=env)
            tree = self._git("write-tree", env=env).strip()
        finally:
            index.unlink(missing_ok=True)
        sha = self._commit_tree(tree, [parent] if parent else [], message, author)
        # Compare-and-swap: a push that landed meanwhile is never overwritten.
        self._git("update-ref", f"refs/heads/{branch}", sha, old or "0" * 40)
        return sha

    def _commit_tree(self, tree: str, parents: list[str], message: str, who: Identity) -> str:
        args = ["commit-tree", tree]
        for p in parents:
            args += ["-p", p]
        env = {
            "GIT_AUTHOR_NAME": who.name,
            "GIT_AUTHOR_EMAIL": who.email,
            "GIT_COMMITTER_NAME": who.name,
            "GIT_COMMITTER_EMAIL": who.email,
        }
        return self._git(*args, stdin=message.encode(), env=env).strip()

    def fork_from(self, parent: GitStore, default_branch: str, *, only_default: bool) -> None:
        """A new bare repository with `parent`'s branches (only the default one if `only_default`),
        as a fork starts; it shares no refs with `parent` afterwards."""
        self.init(default_branch)
        branches = f"refs/heads/{default_branch}" if only_default else "refs/heads/*"
        self.fetch_ref(parent, branches, branches)

    def rev_parse(self, branch: str) -> str | None:
        return self.resolve(f"refs/heads/{branch}")

    def resolve(self, ref: str) -> str | None:
        """The commit a full ref name (``refs/…``) points at; None when there is no such ref."""
        try:
            return self._git("rev-parse", "--verify", "-q", ref).strip()
        except OperationError:
            return None

    def fetch_ref(self, source: GitStore, ref: str, into: str) -> None:
        """Set `into` here to `source`'s `ref`, fetching the commits it needs."""
        self._git("fetch", "-q", "--no-tags", str(source.path), f"+{ref}:{into}")

    def delete_branch(self, branch: str, expected: str) -> None:
        """Delete ``branch`` if it still points at ``expected`` (a push may have raced)."""
        self._git("update-ref", "-d", f"refs/heads/{branch}", expected)

    def commit_date(self, sha: str) -> str:
        return self._git("show", "-s", "--format=%cI", sha).strip()

    def commit_message(self, sha: str) -> str:
        return self._git("show", "-s", "--format=%B", sha).strip()

    def commit_author(self, sha: str) -> Identity:
        name, email = self._git("show", "-s", "--format=%an%x00%ae", sha).strip().split("\0")
        return Identity(name, email)

    def author_date(self, sha: str) -> str:
        return self._git("show", "-s", "--format=%aI", sha).strip()

    def commits(self, base: str, head: str) -> list[str]:
        """The commits on `head` that `base` lacks, oldest first: a pull request's commits."""
        return self._git("rev-list", "--reverse", f"{base}..{head}").split()

    def diff(self, base: str, head: str) -> str:
        return self._git("diff", "--no-color", "--no-ext-diff", f"{base}...{head}")

    def stats(self, base: str, head: str) -> DiffStats:
        adds = dels = files = 0
        for line in self._git("diff", "--numstat", f"{base}...{head}").splitlines():
            a, d, _ = line.split("\t", 2)
            adds += int(a) if a != "-" else 0
            dels += int(d) if d != "-" else 0
            files += 1
        commits = int(self._git("rev-list", "--count", f"{base}..{head}").strip())
        return DiffStats(additions=adds, deletions=dels, changed_files=files, commits=commits)

    def changed_files(self, base: str, head: str) -> list[ChangedFile]:
        """Per file: path, lines added and deleted, and GitHub's PatchStatus."""
        kinds = {"A": "ADDED", "D": "DELETED", "M": "MODIFIED", "R": "RENAMED", "C": "COPIED", "T": "CHANGED"}
        status = {}
        for line in self._git("diff", "--name-status", "--no-renames", f"{base}...{head}").splitlines():
            code, _, path = line.partition("\t")
            status[path] = kinds.get(code[:1], "CHANGED")
        files = []
        for line in self._git("diff", "--numstat", "--no-renames", f"{base}...{head}").splitlines():
            adds, dels, path = line.split("\t", 2)
            files.append(
                ChangedFile(
                    path, int(adds) if adds != "-" else 0, int(dels) if dels != "-" else 0, status.get(path, "CHANGED")
                )
            )
        return files

    def merge_tree(self, base: str, head: str) -> str | None:
        """The tree of merging ``head`` into ``base``, or None when they conflict."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_DIR": str(self.path)}
        proc = subprocess.run(
            ["git", "merge-tree", "--write-tree", "--no-messages", base, head],
            capture_output=True,
            env=env,
            check=False,
        )
        if proc.returncode == 1:
            return None
        if proc.returncode != 0:
            raise OperationError(f"git merge-tree in {self.path.name}: {proc.stderr.decode()}")
        return proc.stdout.decode().split("\n", 1)[0].strip()

    def is_ancestor(self, older: str, newer: str) -> bool:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_DIR": str(self.path)}
        proc = subprocess.run(
            ["git", "merge-base", "--is-ancestor", older, newer],
            capture_output=True,
            env=env,
            check=False,
        )
        return proc.returncode == 0

    def merge(self, base_branch: str, head: str, *, squash: bool, message: str, who: Identity) -> str:
        """Merge ``head`` into ``base_branch`` as GitHub's merge button does; the new tip."""
        base = self.rev_parse(base_branch)
        if base is None:
            raise OperationError(f"base branch {base_branch!r} does not exist")
        tree = self.merge_tree(base, head)
        if tree is None:
            raise OperationError("merge conflict")
        parents = [base] if squash else [base, head]
        sha = self._commit_tree(tree, parents, message, who)
        self._git("update-ref", f"refs/heads/{base_branch}", sha, base)
        return sha

    def _file_diff(self, spec: str, path: str, context: int) -> str:
        # Keyed by commit shas, which never change what they name: a diff that every
        # thread of every pull request in a query asks for is computed once.
        key = (spec, path, context)
        if key not in self._diffs:
            if len(self._diffs) >= _DIFF_CACHE:
                self._diffs.clear()
            self._diffs[key] = self._git("diff", "--no-color", "--no-ext-diff", f"-U{context}", spec, "--", path)
        return self._diffs[key]

    def locate(self, base: str, head: str, path: str, line: int) -> tuple[str, int] | None:
        """Where new-side ``line`` of ``path`` sits in the pull request diff: the hunk cut
        after that line, as GitHub stores with a review comment, and GitHub's diff
        position (lines below the file's first ``@@``, later ``@@`` lines counted).
        None when the line is not part of the diff."""
        hunk: list[str] = []
        new_line = 0
        position = -1
        for raw in self._file_diff(f"{base}...{head}", path, 3).splitlines():
            m = _HUNK.match(raw)
            if m:
                hunk = [raw]
                new_line = int(m.group(3)) - 1
                position += 1
                continue
            if position < 0 or raw.startswith("\\"):  # before the first hunk, or "\ No newline"
                continue
            hunk.append(raw)
            position += 1
            if raw.startswith("-"):
                continue
            new_line += 1
            if new_line == line:
                return "\n".join(hunk), position
        return None

    def follow_line(self, old: str, new: str, path: str, line: int) -> int | None:
        """Line ``line`` of ``path`` at commit ``old``, as numbered at ``new``; None when
        a change between them touched it (or removed the file)."""
        shift = 0
        for raw in self._file_diff(f"{old}..{new}", path, 0).splitlines():
            m = _HUNK.match(raw)
            if m is None:
                continue
            start, removed = int(m.group(1)), int(m.group(2) or 1)
            added = int(m.group(4) or 1)
            # With no lines removed, `start` is the line the insertion follows.
            last = start if removed == 0 else start + removed - 1
            if removed and start <= line <= last:
                return None
            if last < line:
                shift += added - removed
        return line + shift
