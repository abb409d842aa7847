"""The demo's step tracking: which observations prove which steps, and that proof is never undone."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_smith.demo import Cast, Observation, Progress, Step, advance, checks, step_durations
from agent_smith.demo.steps import AuditSeen, ChatEvent, PullSeen, ReviewSeen, StreamEvent

CAST = Cast(
    operator="@operator:localhost",
    developer="devbot",
    developer_user="@devbot:localhost",
    developer_login="devbot",
    reviewer="reviewbot",
    reviewer_user="@reviewbot:localhost",
    reviewer_login="reviewbot",
    refused_host="hooks.slack.com",
)

ASK = ChatEvent("$ask", CAST.operator, "message", "@devbot please fix count()")
EYES = ChatEvent("$eyes", CAST.developer_user, "reaction", relates_to="$ask", key="👀")
REPLY = ChatEvent("$reply", CAST.developer_user, "message", "On it.")
ANNOUNCE = ChatEvent(
    "$ann",
    CAST.developer_user,
    "message",
    "@reviewbot:localhost: devbot opened a pull request",
    ("@reviewbot:localhost",),
)
TOLD = ChatEvent("$told", CAST.developer_user, "message", "@reviewbot addressed your comment")
COMMENTED = ReviewSeen("reviewbot", "COMMENTED", "sha1", inline_comments=1)
APPROVED = ReviewSeen("reviewbot", "APPROVED", "sha2")
OPEN = PullSeen(1, "devbot", "OPEN", "sha1")
REFUSAL = AuditSeen("devbot", "hooks.slack.com", "denied")

WHOLE_STORY = Observation(
    chat=(ASK, EYES, REPLY, ANNOUNCE, TOLD),
    events=(
        StreamEvent("pr_opened", "devbot", 1),
        StreamEvent("pr_reviewed", "reviewbot", 1),
        StreamEvent("pr_merged", "devbot", 1),
    ),
    pulls=(replace(OPEN, state="MERGED", head_sha="sha2", reviews=(COMMENTED, APPROVED)),),
    audit=(AuditSeen("devbot", "vm", "allowed"), REFUSAL),
    rewakes=1,
)


def done(obs: Observation) -> set[Step]:
    return {step for step, named in checks(obs, CAST).items() if all(named.values())}


def failing(obs: Observation, step: Step) -> set[str]:
    return {name for name, ok in checks(obs, CAST)[step].items() if not ok}


def test_the_whole_story_proves_every_step() -> None:
    assert done(WHOLE_STORY) == set(Step)


def test_nothing_seen_proves_nothing() -> None:
    assert done(Observation()) == set()
    assert all(not any(named.values()) for named in checks(Observation(), CAST).values())


@pytest.mark.parametrize(
    ("step", "obs", "missing"),
    [
        # 1. asked
        (Step.ASKED, Observation(chat=(ASK, REPLY)), {"👀 from the developer"}),
        (Step.ASKED, Observation(chat=(ASK, EYES)), {"the developer replied"}),
        (Step.ASKED, Observation(chat=(REPLY, ASK, EYES)), {"the developer replied"}),  # a reply before the ask
        (
            Step.ASKED,
            Observation(chat=(replace(ASK, sender="@mallory:localhost"), EYES, REPLY)),
            {"operator asked the developer", "👀 from the developer", "the developer replied"},
        ),
        (Step.ASKED, Observation(chat=(ASK, replace(EYES, key="👍"), REPLY)), {"👀 from the developer"}),
        (Step.ASKED, Observation(chat=(ASK, replace(EYES, relates_to="$other"), REPLY)), {"👀 from the developer"}),
        (
            Step.ASKED,
            Observation(chat=(ASK, replace(EYES, sender=CAST.reviewer_user), REPLY)),
            {"👀 from the developer"},
        ),
        (
            Step.ASKED,
            Observation(chat=(replace(ASK, body="please fix count()"), EYES, REPLY)),
            {"operator asked the developer", "👀 from the developer", "the developer replied"},
        ),
        # 2. PR opened
        (
            Step.PR_OPENED,
            Observation(pulls=(OPEN,), chat=(ANNOUNCE,)),
            {"pr_opened on the stream"},
        ),
        (
            Step.PR_OPENED,
            Observation(pulls=(OPEN,), events=(StreamEvent("pr_opened", "devbot", 1),)),
            {"reviewer mentioned in the room"},
        ),
        (
            Step.PR_OPENED,
            Observation(pulls=(OPEN,), chat=(ANNOUNCE,), events=(StreamEvent("pr_opened", "devbot", 2),)),
            {"pr_opened on the stream"},
        ),
        (
            Step.PR_OPENED,
            Observation(
                pulls=(replace(OPEN, author="carol"),),
                chat=(ANNOUNCE,),
                events=(StreamEvent("pr_opened", "devbot", 1),),
            ),
            {"PR opened by the developer", "pr_opened on the stream"},
        ),
        # 3. reviewed
        (
            Step.REVIEWED,
            Observation(
                pulls=(replace(OPEN, reviews=(replace(COMMENTED, inline_comments=0),)),),
                events=(StreamEvent("pr_reviewed", "reviewbot", 1),),
            ),
            {"inline comment by the reviewer"},
        ),
        (
            Step.REVIEWED,
            Observation(
                pulls=(replace(OPEN, reviews=(replace(COMMENTED, author="devbot"),)),),
                events=(StreamEvent("pr_reviewed", "reviewbot", 1),),
            ),
            {"inline comment by the reviewer"},
        ),
        (
            Step.REVIEWED,
            Observation(
                pulls=(replace(OPEN, reviews=(COMMENTED,)),), events=(StreamEvent("pr_reviewed", "devbot", 1),)
            ),
            {"pr_reviewed on the stream"},
        ),
        # 4. addressed
        (
            Step.ADDRESSED,
            Observation(pulls=(replace(OPEN, reviews=(COMMENTED,)),), chat=(ANNOUNCE, TOLD), rewakes=1),
            {"fix pushed after the review"},
        ),
        (
            Step.ADDRESSED,
            Observation(pulls=(replace(OPEN, head_sha="sha2", reviews=(COMMENTED,)),), chat=(ANNOUNCE, TOLD)),
            {"Stop hook re-woke the developer"},
        ),
        (
            Step.ADDRESSED,
            Observation(pulls=(replace(OPEN, head_sha="sha2", reviews=(COMMENTED,)),), chat=(ANNOUNCE,), rewakes=2),
            {"reviewer told in the room"},
        ),
        (
            Step.ADDRESSED,
            Observation(pulls=(replace(OPEN, head_sha="sha2"),), chat=(ANNOUNCE, TOLD), rewakes=1),
            {"fix pushed after the review"},
        ),
        # 5. merged
        (
            Step.MERGED,
            Observation(pulls=(replace(OPEN, state="MERGED"),), events=(StreamEvent("pr_merged", "devbot", 1),)),
            {"approved by the reviewer"},
        ),
        (
            Step.MERGED,
            Observation(pulls=(replace(OPEN, reviews=(APPROVED,)),), events=(StreamEvent("pr_merged", "devbot", 1),)),
            {"PR merged"},
        ),
        (
            Step.MERGED,
            Observation(pulls=(replace(OPEN, state="MERGED", reviews=(APPROVED,)),)),
            {"pr_merged on the stream"},
        ),
        (
            Step.MERGED,
            Observation(
                pulls=(replace(OPEN, state="CLOSED", reviews=(APPROVED,)),),
                events=(StreamEvent("pr_merged", "devbot", 1),),
            ),
            {"PR merged"},
        ),
        # 6. refused
        (
            Step.REFUSED,
            Observation(audit=(replace(REFUSAL, decision="allowed"),)),
            {"refused and audited by the firewall"},
        ),
        (
            Step.REFUSED,
            Observation(audit=(replace(REFUSAL, host="api.anthropic.com"),)),
            {"refused and audited by the firewall"},
        ),
    ],
)
def test_each_check_needs_its_own_evidence(step: Step, obs: Observation, missing: set[str]) -> None:
    assert failing(obs, step) == missing


def test_the_first_of_the_developers_pulls_is_the_story() -> None:
    later = replace(OPEN, number=2, state="MERGED", reviews=(APPROVED,))
    obs = Observation(pulls=(later, OPEN), events=(StreamEvent("pr_merged", "devbot", 2),))
    assert "PR merged" in failing(obs, Step.MERGED)


def test_advance_stamps_first_sight_and_keeps_what_was_proven() -> None:
    first = advance(Progress(), Observation(chat=(ASK, EYES, REPLY)), CAST, 1.5)
    assert first.steps == {Step.ASKED: 1.5}
    assert first.checks["asked: 👀 from the developer"] == 1.5
    # A source briefly empty (Synapse unreachable) does not undo it; the time stays the first one.
    again = advance(first, Observation(), CAST, 3.0)
    assert again is first
    whole = advance(again, WHOLE_STORY, CAST, 9.0)
    assert whole.complete
    assert whole.steps[Step.ASKED] == 1.5
    assert whole.steps[Step.MERGED] == 9.0


def test_a_step_is_done_when_its_checks_were_seen_at_different_times() -> None:
    eyes_only = advance(Progress(), Observation(chat=(ASK, EYES)), CAST, 1.0)
    assert Step.ASKED not in eyes_only.steps
    reply_only = advance(eyes_only, Observation(chat=(ASK, REPLY)), CAST, 2.0)
    assert reply_only.steps == {Step.ASKED: 2.0}


def test_durations_follow_the_order_steps_were_done_in() -> None:
    progress = Progress(steps={Step.ASKED: 1.0, Step.PR_OPENED: 4.0, Step.REFUSED: 5.0, Step.MERGED: 7.5})
    assert step_durations(progress) == {Step.ASKED: 1.0, Step.PR_OPENED: 3.0, Step.REFUSED: 1.0, Step.MERGED: 2.5}
    assert step_durations(Progress()) == {}


def test_progress_as_json_lists_every_step() -> None:
    data = Progress(steps={Step.ASKED: 1.0}).as_json()
    assert data["steps"] == {s.value: (1.0 if s is Step.ASKED else None) for s in Step}


# ---- properties over any order of evidence --------------------------------------------------

PIECES = [
    Observation(chat=(ASK,)),
    Observation(chat=(ASK, EYES)),
    Observation(chat=(ASK, EYES, REPLY)),
    Observation(pulls=(OPEN,)),
    Observation(chat=(ANNOUNCE,)),
    Observation(events=(StreamEvent("pr_opened", "devbot", 1),)),
    Observation(pulls=(replace(OPEN, reviews=(COMMENTED,)),)),
    Observation(events=(StreamEvent("pr_reviewed", "reviewbot", 1),)),
    Observation(rewakes=1),
    Observation(pulls=(replace(OPEN, head_sha="sha2", reviews=(COMMENTED,)),)),
    Observation(chat=(ANNOUNCE, TOLD)),
    Observation(pulls=(replace(OPEN, state="MERGED", head_sha="sha2", reviews=(COMMENTED, APPROVED)),)),
    Observation(events=(StreamEvent("pr_merged", "devbot", 1),)),
    Observation(audit=(REFUSAL,)),
    Observation(),
    WHOLE_STORY,
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=25))
def test_progress_only_grows_and_its_times_never_change(sequence: list[Observation]) -> None:
    progress = Progress()
    for moment, obs in enumerate(sequence):
        after = advance(progress, obs, CAST, float(moment))
        assert set(progress.checks) <= set(after.checks)
        assert set(progress.steps) <= set(after.steps)
        assert all(after.checks[k] == v for k, v in progress.checks.items())
        assert all(after.steps[k] == v for k, v in progress.steps.items())
        # A step is never done before every one of its checks was seen.
        for step, at in after.steps.items():
            assert all(after.checks[f"{step.value}: {name}"] <= at for name in checks(Observation(), CAST)[step])
        progress = after
    if WHOLE_STORY in sequence:
        assert progress.complete


def merged(a: Observation, b: Observation) -> Observation:
    """What the sources show once `b` arrived after `a`: logs grow, the PR is its latest state."""
    return Observation(
        chat=a.chat + tuple(e for e in b.chat if e not in a.chat),
        events=a.events + b.events,
        pulls=b.pulls or a.pulls,
        audit=a.audit + b.audit,
        rewakes=max(a.rewakes, b.rewakes),
    )


@settings(max_examples=200, deadline=None)
@given(st.permutations(PIECES[:14]))
def test_evidence_arriving_in_any_order_completes_the_story_once_all_is_there(order: list[Observation]) -> None:
    progress, seen = Progress(), Observation()
    for moment, obs in enumerate(order):
        seen = merged(seen, obs)
        progress = advance(progress, seen, CAST, float(moment))
    final = merged(seen, PIECES[11])  # the PR's last state: merged, both reviews
    progress = advance(progress, final, CAST, 99.0)
    assert progress.complete
    durations = step_durations(progress)
    assert sum(durations.values()) == pytest.approx(max(progress.steps.values()))
