"""The response scrub alone: MB/s of `Scrubber.feed` over the kinds of body a guarded host sends.

The bulk column of `bench.py` and `cpu.py` measure the scrub inside the whole relay, on one
kind of body (a run of one byte). This feeds the scrub the firewall builds for three secrets
(a GitHub token and a Claude access and refresh token, every form `secret_forms` gives) with
bodies in 256 KiB chunks, as the relay reads them, and prints the median of several passes.
No body holds a secret: this is the path every byte of a download takes.

    .venv/bin/python bench/firewall/scrub.py [megabytes-per-body] [passes]
"""

from __future__ import annotations

import json
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from urllib.parse import urlencode

from agent_smith.egress.policy import Scrubber, secret_forms

CHUNK = 256 * 1024


def _token(rng: random.Random, prefix: str, size: int, alphabet: str) -> str:
    return prefix + "".join(rng.choice(alphabet) for _ in range(size))


def scrubber(rng: random.Random) -> Scrubber:
    """The scrub of a crew with a GitHub token and a Claude login, shaped like the real ones."""
    b64url = string.ascii_letters + string.digits + "-_"
    pairs = [
        (_token(rng, "ghp_", 36, string.ascii_letters + string.digits), "agent-smith-placeholder-github-token"),
        (_token(rng, "sk-ant-oat01-", 95, b64url), "agent-smith-placeholder-claude-access-token"),
        (_token(rng, "sk-ant-ort01-", 95, b64url), "agent-smith-placeholder-claude-refresh-token"),
    ]
    table = {
        found.encode(): shown.encode()
        for value, placeholder in pairs
        for found, shown in secret_forms(value, placeholder).items()
    }
    return Scrubber(table)


def _words(rng: random.Random, count: int) -> list[str]:
    vocabulary = ["the", "agent", "review", "merge", "branch", "commit", "firewall", "token", "café", "naïve", "東京"]
    vocabulary += ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(200)]
    return [rng.choice(vocabulary) for _ in range(count)]


def _repeat(block: bytes, size: int) -> bytes:
    return (block * (size // len(block) + 1))[:size]


def bodies(rng: random.Random, size: int) -> dict[str, Callable[[], bytes]]:
    """Each kind of body, made on demand (`size` bytes)."""

    def text() -> bytes:
        return _repeat(" ".join(_words(rng, 200_000)).encode(), size)

    def api_json() -> bytes:
        # Python's and PHP's encoders: non-ASCII as \uXXXX, nested JSON as \", and (PHP) "/" as "\/".
        items = [
            {
                "title": " ".join(_words(rng, 8)),
                "body": json.dumps({"note": " ".join(_words(rng, 12))}),
                "url": f"https://api.github.com/repos/o/r/pulls/{i}",
            }
            for i in range(4000)
        ]
        return _repeat(json.dumps(items).replace("/", "\\/").encode(), size)

    def form() -> bytes:
        # A form body dense with escapes, of bytes the secrets hold ("%2F", "%3D", "%2B") too.
        pairs = [(f"k{i}", "".join(rng.choice(string.printable) for _ in range(24))) for i in range(20_000)]
        return _repeat(urlencode(pairs).encode(), size)

    return {
        "run of one byte (bench bulk)": lambda: b"x" * size,
        "random binary": lambda: rng.randbytes(size),
        "plain text": text,
        "JSON, escaped": api_json,
        "form, urlencoded": form,
    }


def throughput(scrub: Scrubber, body: bytes, passes: int) -> float:
    """Median MB/s over `passes` feeds of `body` in relay-sized chunks."""
    speeds = []
    for _ in range(passes):
        start = time.perf_counter()
        out = 0
        for offset in range(0, len(body), CHUNK):
            out += len(scrub.feed(body[offset : offset + CHUNK]))
        out += len(scrub.flush())
        elapsed = time.perf_counter() - start
        assert out == len(body), "a body without secrets came out changed"
        speeds.append(len(body) / elapsed / 1e6)
    return statistics.median(speeds)


def main() -> None:
    size = int(float(sys.argv[1]) * 1e6) if len(sys.argv) > 1 else 32_000_000
    passes = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rng = random.Random(7)
    scrub = scrubber(rng)
    print(f"Scrubber.feed, 3 secrets, {size / 1e6:.0f} MB bodies in {CHUNK // 1024} KiB chunks, median of {passes}")
    for name, make in bodies(rng, size).items():
        print(f"{name:30}{throughput(scrub, make(), passes):>10.0f} MB/s")


if __name__ == "__main__":
    main()
