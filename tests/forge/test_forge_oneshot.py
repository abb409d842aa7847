"""The Stop hook's one-shot check: its HTTP/1.1 client against the real stand-in, and its CA cache."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.fixtures.github import GitHubFixture

from agent_smith.certs import mint_ca
from agent_smith.errors import OperationError, RateLimited, UsageError
from agent_smith.forge.environment import HASHED_DIR_FROM, hashed_ca_dir, split_certificates, ssl_context
from agent_smith.forge.oneshot import PendingCheck, ProtocolError, read_response, review_activity_once
from agent_smith.forge.query import MAX_SEARCH_CHARS, review_activity_request, review_activity_searches
from agent_smith.home.plan import SYSTEM_BUNDLES, ca_bundle

REPO = "carol/widgets"


def system_bundle() -> bytes:
    found = next(b for b in SYSTEM_BUNDLES if b.is_file())
    return found.read_bytes()


def env_for(github: GitHubFixture, login: str = "alice", **extra: str) -> dict[str, str]:
    return {"GITHUB_TOKEN": github.token(login), "SSL_CERT_FILE": str(github.standin.ca_path), **extra}


def test_one_check_sees_the_open_pull_requests_and_their_reviews(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.push_branch("alice", "feature", {"a.py": "x = 1\n"})
    gh.gh("alice", "pr", "create", "-R", REPO, "--head", "feature", "--base", "main", "--title", "A", "--body", "b")
    gh.gh("bob", "pr", "review", "1", "-R", REPO, "--comment", "-b", "Why x?")
    activity = review_activity_once(gh.standin.graphql_url, "alice", [REPO], env_for(gh))
    [pr] = activity.pull_requests
    assert (pr.repo, pr.number, pr.title) == (REPO, 1, "A")
    assert [(r.author, r.body) for r in pr.reviews] == [("bob", "Why x?")]


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        ("server error", "answered 502"),
        ("secondary rate limit", "rate limited the token (403); it asks to wait 60 s"),
        # GraphQL's own limit is a 200 with a RATE_LIMITED error: the watcher must wait it out too.
        ("primary rate limit", "rate limited the token (RATE_LIMITED); it asks to wait"),
        ("bad token", "rejected the token (401); check GITHUB_TOKEN"),
    ],
)
def test_every_failure_is_one_operation_error_line_without_the_token(
    github_standin: GitHubFixture, fault: str, said: str
) -> None:
    gh = github_standin
    env = env_for(gh)
    if fault == "server error":
        gh.standin.faults.fail(502, path="/api/graphql")
    elif fault == "secondary rate limit":
        gh.standin.faults.secondary_rate_limit(retry_after=60, path="/api/graphql")
    elif fault == "primary rate limit":
        gh.standin.faults.primary_rate_limit(reset_in=600, path="/api/graphql")
    else:
        env["GITHUB_TOKEN"] = "agent-smith-placeholder-wrong-token"
    with pytest.raises(OperationError) as failed:
        review_activity_once(gh.standin.graphql_url, "alice", None, env)
    if fault == "secondary rate limit":
        assert isinstance(failed.value, RateLimited)
        assert failed.value.seconds == 60
    if fault == "primary rate limit":
        assert isinstance(failed.value, RateLimited)
        assert 590 <= failed.value.seconds <= 601
    message = str(failed.value)
    assert message.startswith("review activity of alice: ")
    assert said in message
    assert "\n" not in message
    assert env["GITHUB_TOKEN"] not in message


def test_connection_failures_are_raised_by_the_result_not_the_request(github_standin: GitHubFixture) -> None:
    gh = github_standin
    refused = PendingCheck("https://127.0.0.1:9/api/graphql", "alice", None, env_for(gh), timeout=5)
    with pytest.raises(OperationError, match=r"cannot reach 127\.0\.0\.1: ConnectionRefusedError"):
        refused.result()
    untrusted = PendingCheck(gh.standin.graphql_url, "alice", None, {**env_for(gh), "SSL_CERT_FILE": __file__})
    with pytest.raises(UsageError, match="cannot load CA certificates"):
        untrusted.result()
    with pytest.raises(UsageError, match="no GitHub token"):
        PendingCheck(gh.standin.graphql_url, "alice", None, {"SSL_CERT_FILE": str(gh.standin.ca_path)}).result()


def test_a_slow_answer_times_out(github_standin: GitHubFixture) -> None:
    gh = github_standin
    gh.standin.faults.slow(5, path="/api/graphql")
    started = time.monotonic()
    with pytest.raises(OperationError, match=r"did not answer in time: TimeoutError"):
        review_activity_once(gh.standin.graphql_url, "alice", None, env_for(gh), timeout=0.5)
    assert time.monotonic() - started < 4


def test_an_agents_bundle_is_trusted_through_the_hashed_cache(github_standin: GitHubFixture, tmp_path: Path) -> None:
    """The agent's bundle (the system's CAs plus one more) is loaded lazily, with the same trust."""
    gh = github_standin
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(ca_bundle(system_bundle(), gh.standin.ca_path.read_bytes()))
    cache = tmp_path / "cache"
    env = env_for(gh, SSL_CERT_FILE=str(bundle))
    assert review_activity_once(gh.standin.graphql_url, "alice", None, env, ca_cache=cache).pull_requests == ()
    [built] = list(cache.iterdir())
    assert hashed_ca_dir(str(bundle), cache) == str(built)  # reused, not rebuilt
    assert sum(1 for p in built.iterdir() if p.is_symlink()) > 100  # one name per certificate

    without = tmp_path / "system-only.pem"
    without.write_bytes(system_bundle())
    env = env_for(gh, SSL_CERT_FILE=str(without))
    with pytest.raises(OperationError, match=r"certificate of .* is not trusted"):
        review_activity_once(gh.standin.graphql_url, "alice", None, env, ca_cache=cache)
    assert len(list(cache.iterdir())) == 1  # the older bundle's copy is gone

    abandoned, building = cache / ".building-1-dead", cache / ".building-2-live"
    abandoned.mkdir()
    building.mkdir()
    os.utime(abandoned, (time.time() - 3600, time.time() - 3600))
    bundle.write_bytes(bundle.read_bytes() + b"\n")  # a changed file gets a new copy
    assert hashed_ca_dir(str(bundle), cache) not in (None, str(built))
    assert not abandoned.exists(), "a killed hook's half-built copy is cleared"
    assert building.exists(), "a copy another hook is building right now is left alone"


def test_small_or_odd_ca_files_are_loaded_as_they_are(tmp_path: Path) -> None:
    small = tmp_path / "one.pem"
    small.write_bytes(system_bundle()[: HASHED_DIR_FROM // 2])
    assert hashed_ca_dir(str(small), tmp_path / "cache") is None
    with_crl = tmp_path / "with-crl.pem"
    with_crl.write_bytes(system_bundle() + b"-----BEGIN X509 CRL-----\nAA==\n-----END X509 CRL-----\n")
    assert hashed_ca_dir(str(with_crl), tmp_path / "cache") is None
    assert hashed_ca_dir(str(tmp_path / "missing.pem"), tmp_path / "cache") is None
    assert not (tmp_path / "cache").exists()
    whole = tmp_path / "whole.pem"
    whole.write_bytes(system_bundle())
    loaded = ssl_context({"SSL_CERT_FILE": str(whole)}).cert_store_stats()["x509_ca"]
    assert loaded == len(split_certificates(system_bundle()) or [])  # without a cache: the file, whole


def test_split_certificates() -> None:
    one = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----"
    assert split_certificates(b"# a comment\n" + one + b"\n\n" + one + b"\n") == [one + b"\n", one + b"\n"]
    assert split_certificates(b"") is None
    assert split_certificates(one[:-10]) is None
    assert split_certificates(one + b"\n-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n") is None


def answer(raw: bytes) -> tuple[int, str, dict[str, str], bytes]:
    parsed = read_response(io.BytesIO(raw))
    return parsed.status, parsed.reason, parsed.headers, parsed.body


def test_read_response_frames_bodies_every_way_http_1_1_does() -> None:
    assert answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: 1\r\nx-a: 2\r\n\r\nhello+junk") == (
        200,
        "OK",
        {"content-length": "5", "x-a": "1, 2"},
        b"hello",
    )
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-T: t\r\n\r\n"
    assert answer(chunked)[3] == b"hello!"
    assert answer(b"HTTP/1.0 502 Bad Gateway\r\n\r\nupstream down") == (502, "Bad Gateway", {}, b"upstream down")
    assert answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n") == (204, "No Content", {}, b"")
    assert answer(b"HTTP/1.1 401\r\nContent-Length: 0\r\n\r\n")[:2] == (401, "")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n",
    ],
)
def test_read_response_refuses_what_is_not_http(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_response(io.BytesIO(raw))


class DrippingServer:
    """A real TLS server that reads the request, then answers one byte every `every` seconds and
    never finishes its headers (until `stop`): each read returns before a socket timeout would."""

    def __init__(self, tmp: Path, every: float = 0.1) -> None:
        ca = mint_ca("drip test CA")
        cert, key = ca.issue(["127.0.0.1"])
        (tmp / "ca.pem").write_bytes(ca.cert_pem)
        (tmp / "leaf.pem").write_bytes(cert + key)
        self.ca_path = tmp / "ca.pem"
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.load_cert_chain(tmp / "leaf.pem")
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}/graphql"
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with self._tls.wrap_socket(conn, server_side=True) as tls:
            tls.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 100_000
            for byte in head:
                if self._stop.wait(self._every):
                    return
                tls.sendall(bytes([byte]))

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(5)


def test_a_server_answering_a_byte_at_a_time_cannot_stretch_a_check_past_its_timeout(tmp_path: Path) -> None:
    server = DrippingServer(tmp_path)
    try:
        env = {"GITHUB_TOKEN": "agent-smith-placeholder-token", "SSL_CERT_FILE": str(server.ca_path)}
        outcome: list[BaseException] = []

        def check() -> None:
            try:
                review_activity_once(server.url, "alice", None, env, timeout=1.0)
            except BaseException as exc:
                outcome.append(exc)

        started = time.monotonic()
        thread = threading.Thread(target=check, daemon=True)
        thread.start()
        thread.join(10)
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    assert not thread.is_alive(), "the check still reads a byte at a time after 10 s"
    assert elapsed < 3
    [failure] = outcome
    assert isinstance(failure, OperationError)
    assert "did not answer in time: TimeoutError" in str(failure)


def test_an_agent_in_many_repositories_is_checked_in_searches_github_supports(
    github_standin: GitHubFixture,
) -> None:
    """Eight repositories' `repo:` qualifiers are longer than the 256 characters a GitHub search may
    be: split over several searches, still one round trip, by the one-shot check and the client."""
    gh = github_standin
    world = gh.standin.world
    with world.lock:
        repos = [
            world.add_repo("carol", f"widgets-with-a-long-name-{n}", collaborators=("alice", "bob")) for n in range(8)
        ]
        for repo in (repos[0], repos[7]):
            repo.git.commit_files("feature", {"a.py": "x = 1\n"}, "c", gh.users["alice"].identity, start_point="main")
            world.open_pull(repo, gh.users["alice"], head="feature", base="main", title=repo.name)
    names = [r.full_name for r in repos]
    assert len(" ".join(f"repo:{name}" for name in names)) > 256
    graphql_before = sum(1 for e in gh.standin.exchanges if e.kind == "graphql")
    activity = review_activity_once(gh.standin.graphql_url, "alice", names, env_for(gh))
    assert sorted(p.repo for p in activity.pull_requests) == [names[0], names[7]]

    async def with_the_client() -> list[str]:
        async with gh.client("alice") as alice:
            return sorted(p.repo for p in (await alice.review_activity("alice", names)).pull_requests)

    assert asyncio.run(with_the_client()) == [names[0], names[7]]
    assert sum(1 for e in gh.standin.exchanges if e.kind == "graphql") - graphql_before == 2


@given(
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", fullmatch=True),
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9._-]{1,100}", fullmatch=True),
        ).map("/".join),
        max_size=40,
    ),
)
def test_searches_fit_githubs_limit_and_name_every_repository_once(login: str, repos: list[str]) -> None:
    searches = review_activity_searches(login, repos)
    assert all(len(s) <= MAX_SEARCH_CHARS for s in searches)
    assert all(s.startswith(f"is:pr is:open archived:false author:{login}") for s in searches)
    named = [word.removeprefix("repo:") for s in searches for word in s.split() if word.startswith("repo:")]
    assert named == repos
    assert len(searches) >= 1
    query, variables = review_activity_request(login, repos)
    assert sorted(variables) == sorted(f"q{n}" for n in range(len(searches)))
    assert query.count("search(query: $q") == len(searches)
