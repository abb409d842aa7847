"""Image tags and chart version for a pushed git ref: the release workflow's tagging contract.

    main branch       → :main, :sha-<7 hex>
    tag vX.Y.Z        → :vX.Y.Z, :vX.Y, :vX, :latest   (chart version X.Y.Z)
    tag vX.Y.Z-rc.1   → :vX.Y.Z-rc.1 only              (chart version X.Y.Z-rc.1)
    anything else     → built, not pushed

Standard library only: the workflow runs this file with the runner's python3
before anything is installed.

    python3 src/agent_smith/deploy/tags.py --ref "$GITHUB_REF" --sha "$GITHUB_SHA" \
        --image ghcr.io/owner/agent-smith --github-output "$GITHUB_OUTPUT"
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass

_SHA = re.compile(r"^[0-9a-f]{40}$")
_VERSION = re.compile(
    r"^v(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?P<pre>-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)


@dataclass(frozen=True)
class Release:
    tags: tuple[str, ...]
    chart_version: str | None

    @property
    def push(self) -> bool:
        return bool(self.tags)


def release_for(ref: str, sha: str) -> Release:
    """What a push of `ref` at commit `sha` publishes."""
    if not _SHA.fullmatch(sha):
        raise ValueError(f"{sha!r} is not a full commit sha")
    if ref == "refs/heads/main":
        return Release(("main", f"sha-{sha[:7]}"), None)
    if ref.startswith("refs/tags/"):
        match = _VERSION.fullmatch(ref.removeprefix("refs/tags/"))
        if match is None:
            return Release((), None)
        major, minor, patch = match["major"], match["minor"], match["patch"]
        version = f"{major}.{minor}.{patch}{match['pre'] or ''}"
        if match["pre"]:
            return Release((f"v{version}",), version)
        return Release((f"v{version}", f"v{major}.{minor}", f"v{major}", "latest"), version)
    return Release((), None)


def github_output(release: Release, image: str) -> str:
    """The step outputs, in GitHub's multi-line `name<<DELIM` file format."""
    refs = "\n".join(f"{image}:{tag}" for tag in release.tags)
    return (
        f"push={'true' if release.push else 'false'}\n"
        f"chart_version={release.chart_version or ''}\n"
        f"tags<<AGENT_SMITH_TAGS\n{refs}\nAGENT_SMITH_TAGS\n"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ref", required=True)
    parser.add_argument("--sha", required=True)
    parser.add_argument("--image", required=True, help="e.g. ghcr.io/owner/agent-smith (lower case)")
    parser.add_argument("--github-output", help="append the outputs to this file ($GITHUB_OUTPUT)")
    args = parser.parse_args(argv)
    if args.image != args.image.lower():
        parser.error(f"image {args.image!r} must be lower case")
    try:
        release = release_for(args.ref, args.sha)
    except ValueError as exc:
        parser.error(str(exc))
    text = github_output(release, args.image)
    if args.github_output:
        with open(args.github_output, "a", encoding="utf-8") as fh:
            fh.write(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
