"""A LIKE or DISLIKE that would change nothing is a typed, recorded rejection, not a silent
no-op counted as applied."""

from __future__ import annotations

from pathlib import Path

from friendsim.platform import Platform, VirtualClock
from friendsim.platform.events import ActionFailed, VoteCast, VoteChanged
from friendsim.runtime.apply import apply_decision
from friendsim.vocabulary import TIMELINE_ACTIONS, Action, Decision


async def test_a_second_like_of_the_same_item_is_rejected_and_recorded(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "e.db", clock=VirtualClock(0.0))
    for a in ("a", "b"):
        await p.register_agent(a, name=a)
    post = (await p.create_post("a", text="hello", topic="t")).post_id

    async def act(*types: str) -> tuple[object, list[object]]:
        before = p.last_seq
        decision = Decision(
            actions=tuple(Action(type=t, target_post=post) for t in types)  # type: ignore[arg-type]
        )
        outcome = await apply_decision(
            p, "b", decision, window=1, allowed=TIMELINE_ACTIONS, n_actions=len(types), theme="t"
        )
        await p.flush()
        return outcome, [e async for e in p.events(before + 1)]

    outcome, events = await act("LIKE", "LIKE")
    assert [type(e) for e in events] == [VoteCast, ActionFailed]
    failed = events[1]
    assert isinstance(failed, ActionFailed)
    assert (failed.stage, failed.reason, failed.action) == (
        "command",
        "duplicate_vote",
        {"type": "LIKE", "target_post": post, "tone": "neutral"},
    )
    assert [a.type for a in outcome.applied] == ["LIKE"]  # type: ignore[attr-defined]
    assert (outcome.events, outcome.failures, outcome.votes) == (1, 1, 1)  # type: ignore[attr-defined]
    # a like the agent gave in an earlier wake counts too; a dislike changes the vote
    outcome, events = await act("LIKE", "DISLIKE", "DISLIKE")
    assert [type(e) for e in events] == [ActionFailed, VoteChanged, ActionFailed]
    assert [e.reason for e in events if isinstance(e, ActionFailed)] == ["duplicate_vote"] * 2
    await p.close()
