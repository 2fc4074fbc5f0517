"""Turning a policy's :class:`Decision` and :class:`Ballot` into platform commands.

Decisions are applied one agent at a time, actions in the order the policy gave them; the
schedulers call these functions in sorted agent order, so the log is the same for the same
decisions. Nothing here raises on bad input from a policy: a rejected command
(:class:`~friendsim.platform.errors.PlatformError`) becomes an ``ActionFailed`` event with
``stage="command"`` and the error's ``code`` as reason (text the log cannot hold, such as a
lone surrogate, is ``invalid_text``, as empty text is; the recorded action keeps its text with
U+FFFD in place of each lone surrogate, see ``Platform.record``); a policy :class:`Failure`
becomes an ``ActionFailed`` with the failure's own stage. ``NOT`` produces no platform event; it is counted
in the returned :class:`Outcome` (rewards use ``RewardParams.n_actions`` as the action count).

Slot rule (paper: "exactly N actions per agent per round"): the first ``n_actions`` actions are
applied; surplus actions are dropped and recorded as one ``ActionFailed(stage="runtime",
reason="too_many_actions")``; a decision with fewer than ``n_actions`` actions and no failure
gets one ``ActionFailed(stage="runtime", reason="short_plan")``. So each agent ends every round
with exactly N applied-or-rejected actions, or a recorded failure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from friendsim._slots import setters
from friendsim.llm.redact import redact_text
from friendsim.platform.errors import DuplicateVoteError, PlatformError
from friendsim.platform.events import ActionFailed, Event, VoteCast, VoteChanged
from friendsim.vocabulary import Action, ActionType, Ballot, Decision, Failure, ReceivedVote

if TYPE_CHECKING:
    from friendsim.platform.service import Platform

_NEEDS_POST: frozenset[str] = frozenset({"COM", "LIKE", "DISLIKE", "REPOST"})
_NEEDS_USER: frozenset[str] = frozenset({"DM", "FOLLOW", "UNFOLLOW"})
_DETAIL_MAX = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What applying one decision (or ballot) did. ``applied`` holds the actions that took effect
    (``NOT`` included); ``events`` counts platform events they produced; ``failures`` counts
    ``ActionFailed`` events recorded (rejections and policy failures)."""

    applied: tuple[Action, ...] = ()
    events: int = 0
    nots: int = 0
    failures: int = 0
    votes: int = 0
    received: tuple[VoteCast | VoteChanged, ...] = ()
    """Every vote cast or changed: what their authors (``author``) will be told."""


_RECEIVED_FIELDS = ("voter", "post_id", "value")
_SET_VOTER, _SET_POST, _SET_VALUE = setters(ReceivedVote, *_RECEIVED_FIELDS)


def received_vote(event: VoteCast | VoteChanged) -> ReceivedVote:
    """What the author of the voted item is told about ``event``: the same object as
    ``ReceivedVote(voter=..., post_id=..., value=...)``, built slot by slot (every agent is told
    of up to 200 votes at each wake; see :mod:`friendsim._slots`)."""
    vote = object.__new__(ReceivedVote)
    _SET_VOTER(vote, event.actor or "")
    _SET_POST(vote, event.post_id)
    _SET_VALUE(vote, event.value)
    return vote


def action_record(action: Action) -> dict[str, Any]:
    """An action as a JSON-ready mapping (stored in ``ActionFailed.action``)."""
    return {k: v for k, v in dataclasses.asdict(action).items() if v not in (None, "")}


async def record_failure(
    platform: Platform,
    agent: str,
    *,
    window: int,
    stage: str,
    reason: str,
    detail: str = "",
    attempts: int = 1,
    action: Mapping[str, Any] | None = None,
) -> None:
    """Append one ``ActionFailed`` event for ``agent``."""
    await platform.record(
        ActionFailed(
            t=platform.clock.now(),
            actor=agent,
            window=window,
            stage=stage or "unknown",
            reason=reason or "unknown",
            detail=redact_text(detail)[:_DETAIL_MAX],
            attempts=max(1, int(attempts)),
            action=dict(action) if action is not None else None,
        )
    )


async def record_policy_failure(
    platform: Platform, agent: str, failure: Failure, *, window: int
) -> None:
    """Record a policy :class:`Failure` as ``ActionFailed`` with the failure's stage."""
    await record_failure(
        platform,
        agent,
        window=window,
        stage=failure.stage,
        reason=failure.reason,
        detail=failure.detail,
        attempts=failure.attempts,
        action=failure.action,
    )


def _precheck(action: Action, allowed: Collection[ActionType]) -> tuple[str, str] | None:
    if action.type not in allowed:
        return "not_allowed", f"{action.type} is not allowed here (allowed: {', '.join(allowed)})"
    if action.type in _NEEDS_POST and action.target_post is None:
        return "missing_target", f"{action.type} needs target_post"
    if action.type in _NEEDS_USER and not action.recipient:
        return "missing_recipient", f"{action.type} needs recipient"
    return None


async def execute(platform: Platform, agent: str, action: Action, *, theme: str) -> Event | None:
    """Run one action as a platform command; returns its event (``None`` for NOT).

    Raises :class:`PlatformError` when the platform rejects it, and
    :class:`~friendsim.platform.errors.DuplicateVoteError` for a LIKE (DISLIKE) of an item the
    agent already likes (dislikes): it would change nothing and leave no event.
    """
    mentions = (action.mention,) if action.mention else ()
    topic = action.topic or theme
    match action.type:
        case "NOT":
            return None
        case "POST" | "COM" | "REPOST":
            return await platform.create_post(
                agent,
                text=action.text,
                topic=topic,
                mentions=mentions,
                parent_id=action.target_post if action.type == "COM" else None,
                quote_of=action.target_post if action.type == "REPOST" else None,
                tone=action.tone,
            )
        case "DM":
            assert action.recipient is not None
            return await platform.send_dm(
                agent,
                action.recipient,
                text=action.text,
                topic=topic,
                mentions=mentions,
                tone=action.tone,
            )
        case "LIKE" | "DISLIKE":
            assert action.target_post is not None
            value = 1 if action.type == "LIKE" else -1
            vote = await platform.vote(agent, action.target_post, value)
            if vote is None:
                raise DuplicateVoteError(
                    f"{agent!r} already {'likes' if value > 0 else 'dislikes'} "
                    f"post {action.target_post}"
                )
            return vote
        case "FOLLOW":
            assert action.recipient is not None
            return await platform.follow(agent, action.recipient)
        case "UNFOLLOW":
            assert action.recipient is not None
            return await platform.unfollow(agent, action.recipient)
        case other:  # pragma: no cover - ActionType is closed
            raise ValueError(f"unknown action type {other!r}")


async def apply_decision(
    platform: Platform,
    agent: str,
    decision: Decision,
    *,
    window: int,
    allowed: Collection[ActionType],
    n_actions: int,
    theme: str,
) -> Outcome:
    """Apply a decision's actions (at most ``n_actions``) and record its failures."""
    applied: list[Action] = []
    received: list[VoteCast | VoteChanged] = []
    events = nots = failures = votes = 0
    for failure in decision.failures:
        await record_policy_failure(platform, agent, failure, window=window)
        failures += 1
    actions = decision.actions[:n_actions]
    for action in actions:
        problem = _precheck(action, allowed)
        if problem is not None:
            await record_failure(
                platform,
                agent,
                window=window,
                stage="command",
                reason=problem[0],
                detail=problem[1],
                action=action_record(action),
            )
            failures += 1
            continue
        try:
            event = await execute(platform, agent, action, theme=theme)
        except PlatformError as exc:
            await record_failure(
                platform,
                agent,
                window=window,
                stage="command",
                reason=exc.code,
                detail=str(exc),
                action=action_record(action),
            )
            failures += 1
            continue
        applied.append(action)
        events += event is not None
        nots += action.type == "NOT"
        if isinstance(event, VoteCast | VoteChanged):
            received.append(event)
            votes += 1
    surplus = len(decision.actions) - len(actions)
    if surplus > 0:
        await record_failure(
            platform,
            agent,
            window=window,
            stage="runtime",
            reason="too_many_actions",
            detail=f"policy returned {len(decision.actions)} actions, {n_actions} allowed; "
            f"dropped the last {surplus}",
        )
        failures += 1
    elif len(actions) < n_actions and not decision.failures:
        await record_failure(
            platform,
            agent,
            window=window,
            stage="runtime",
            reason="short_plan",
            detail=f"policy returned {len(actions)} of {n_actions} actions and no failure",
        )
        failures += 1
    return Outcome(
        applied=tuple(applied),
        events=events,
        nots=nots,
        failures=failures,
        votes=votes,
        received=tuple(received),
    )


async def apply_ballot(
    platform: Platform,
    agent: str,
    ballot: Ballot,
    *,
    window: int,
    offered: Collection[int],
) -> Outcome:
    """Cast a ballot's non-zero votes (sorted by post id) on offered items; record failures.

    A vote on an item that was not offered, or a value other than -1/0/+1, is recorded as
    ``ActionFailed(stage="vote")`` and not cast. Consecutive valid votes are cast in one
    :meth:`~friendsim.platform.service.Platform.cast_votes` call (the same events as one
    ``vote`` each).
    """
    failures = 0
    cast: list[Event | None] = []
    run: list[tuple[int, int]] = []

    async def cast_run() -> None:
        nonlocal failures, run
        while run:
            done, error = await platform.cast_votes(agent, run)
            cast.extend(done)
            if error is None:
                break
            post_id, value = run[len(done)]
            await record_failure(
                platform,
                agent,
                window=window,
                stage="vote",
                reason=error.code,
                detail=str(error),
                action={"type": "VOTE", "target_post": post_id, "value": value},
            )
            failures += 1
            run = run[len(done) + 1 :]
        run = []

    for failure in ballot.failures:
        await record_policy_failure(platform, agent, failure, window=window)
        failures += 1
    votes = ballot.votes
    for post_id in sorted(votes, key=_sort_key):
        value = votes[post_id]
        reason = None
        if not isinstance(post_id, int) or isinstance(post_id, bool) or post_id not in offered:
            reason, detail = "not_offered", f"vote on item {post_id!r}, which was not offered"
        elif isinstance(value, bool) or value not in (-1, 0, 1):
            reason, detail = (
                "invalid_vote",
                f"vote value {value!r} on item {post_id} (want -1, 0, 1)",
            )
        if reason is not None:
            await cast_run()
            await record_failure(
                platform,
                agent,
                window=window,
                stage="vote",
                reason=reason,
                detail=detail,
                action={"type": "VOTE", "target_post": repr(post_id), "value": repr(value)},
            )
            failures += 1
            continue
        if value != 0:
            run.append((post_id, value))
    await cast_run()
    events = [e for e in cast if e is not None]
    received = [e for e in events if type(e) is VoteCast or type(e) is VoteChanged]
    return Outcome(
        events=len(events),
        failures=failures,
        votes=len(events),
        received=tuple(received),
    )


def _sort_key(post_id: object) -> tuple[int, int, str]:
    if isinstance(post_id, int) and not isinstance(post_id, bool):
        return (0, post_id, "")
    return (1, 0, repr(post_id))
