"""One agent's vote chunks go out concurrently; ballots and logs do not depend on arrival order."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from friendsim.agents import generate_personas, make_llm_policy
from friendsim.agents.llm_policy import LLMPolicyConfig
from friendsim.llm.base import LLMRequest
from friendsim.llm.errors import CacheMissError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import parse_config
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.vocabulary import FeedItem, Observation

PERSONAS = generate_personas(6, seed=2)
ME = PERSONAS[0].id
OTHERS = [p.id for p in PERSONAS[1:]]
ITEMS = tuple(
    FeedItem(post_id=100 + i, author=(ME if i % 7 == 0 else OTHERS[i % 5]), text=f"t{i}", topic="x")
    for i in range(95)
)


def _obs() -> Observation:
    return Observation(
        agent_id=ME, window=2, now=10.0, theme="climate change", n_actions=1, feed=ITEMS,
        known_users=tuple(p.id for p in PERSONAS), topics=("x",),
    )  # fmt: skip


def _ids(req: LLMRequest) -> list[int]:
    assert req.json_schema is not None
    return list(req.json_schema["properties"]["votes"]["items"]["properties"]["post_id"]["enum"])


class Gauge:
    """Answers vote chunks, the first chunk last (a delay that falls with the chunk's first
    id), and records how many requests were in flight at once."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.answered: list[int] = []

    async def __call__(self, req: LLMRequest) -> Any:
        ids = _ids(req)
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.02 * (200 - ids[0]) / 100)
        self.in_flight -= 1
        self.answered.append(ids[0])
        return {"votes": [{"post_id": i, "vote": 1 if i % 3 else -1} for i in ids]}


async def test_chunks_are_in_flight_together_and_merged_in_chunk_order() -> None:
    gauge = Gauge()
    policy = make_llm_policy(PERSONAS[0], ScriptedLLM(gauge), theme="climate change")
    ballot = await policy.vote(_obs(), ITEMS)

    seq_llm = ScriptedLLM(Gauge())
    sequential = make_llm_policy(
        PERSONAS[0], seq_llm, theme="climate change", config=LLMPolicyConfig(parallel_votes=False)
    )
    expected = await sequential.vote(_obs(), ITEMS)

    theirs = [i.post_id for i in ITEMS if i.author != ME]
    assert len(theirs) == 81  # three chunks of 40, 40, 1
    assert gauge.most == 3 and seq_llm.calls and len(seq_llm.calls) == 3
    assert gauge.answered == sorted(gauge.answered, reverse=True)  # last chunk answered first
    assert list(ballot.votes) == theirs  # merged in chunk order, whatever the arrival order
    assert ballot == expected
    assert [_ids(r) for r in policy.llm.calls] == [_ids(r) for r in seq_llm.calls]  # type: ignore[attr-defined]
    assert [r.seed for r in policy.llm.calls] == [r.seed for r in seq_llm.calls]  # type: ignore[attr-defined]


async def test_a_failing_chunk_keeps_its_place_and_a_miss_cancels_the_rest() -> None:
    theirs = [i.post_id for i in ITEMS if i.author != ME]

    async def one_bad(req: LLMRequest) -> Any:
        ids = _ids(req)
        await asyncio.sleep(0.03 if ids[0] == theirs[0] else 0.01)
        if ids[0] == theirs[40]:  # the second chunk answers garbage every time
            return {"votes": "no"}
        return {"votes": [{"post_id": i, "vote": 1} for i in ids]}

    policy = make_llm_policy(PERSONAS[0], ScriptedLLM(one_bad), theme="climate change")
    ballot = await policy.vote(_obs(), ITEMS)
    assert len(ballot.failures) == 1 and ballot.failures[0].stage == "vote"
    assert list(ballot.votes) == theirs[:40] + theirs[80:]

    started: list[int] = []
    finished: list[int] = []

    async def miss_then_slow(req: LLMRequest) -> Any:
        ids = _ids(req)
        started.append(ids[0])
        if ids[0] == theirs[0]:
            raise CacheMissError("k", "vote", "not recorded")
        await asyncio.sleep(0.2)
        finished.append(ids[0])
        return {"votes": [{"post_id": i, "vote": 1} for i in ids]}

    policy = make_llm_policy(PERSONAS[0], ScriptedLLM(miss_then_slow), theme="climate change")
    with pytest.raises(CacheMissError):
        await policy.vote(_obs(), ITEMS)
    await asyncio.sleep(0.3)
    assert len(started) == 3 and finished == []  # the other chunks were cancelled, not left running


def cfg(**llm: Any) -> Any:
    return parse_config(
        {
            "experiment": {"name": "v", "seed": 7, "rounds": 2, "n_actions": 2},
            "agents": {"count": 9, "policy": "llm"},
            "llm": {"provider": "scripted", "retries": 0, "prompt_profile": "compact", **llm},
            "rewards": {"sentiment": "lexicon"},
        }
    )


def jittered(spec: str) -> ScriptedLLM:
    """The plausible mind, answering after a delay drawn from the request (so chunks of one
    agent come back in a scrambled order)."""
    mind = plausible_responder(0)

    async def respond(req: LLMRequest) -> Any:
        h = hashlib.sha256(req.cache_key("jitter").encode()).digest()
        await asyncio.sleep(h[0] / 255 * 0.02)
        return mind(req)

    return ScriptedLLM(respond, model=spec.replace(":", "-"))


def instant(spec: str) -> ScriptedLLM:
    return ScriptedLLM(plausible_responder(0), model=spec.replace(":", "-"))


def rows(run: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(run / "events.db") as con:
        return con.execute("SELECT * FROM events ORDER BY seq").fetchall()


async def test_scrambled_arrival_gives_the_same_log_and_replays(tmp_path: Path) -> None:
    a = await run_experiment(cfg(cache="record"), out_dir=tmp_path / "a", llm_factory=jittered)
    await run_experiment(cfg(), out_dir=tmp_path / "b", llm_factory=instant)
    assert a.manifest.status == "completed"
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    votes = [r for r in rows(tmp_path / "a") if r[2] == "vote_cast"]
    assert len(votes) > 20
    with sqlite3.connect(tmp_path / "a" / "llm_cache.db") as con:
        n_vote = con.execute("SELECT count(*) FROM llm_cache WHERE label = 'vote'").fetchone()
    assert n_vote[0] > 9  # compact profile: chunks of 12, so several chunks per agent

    (tmp_path / "rep").mkdir()
    shutil.copy(tmp_path / "a" / "llm_cache.db", tmp_path / "rep" / "llm_cache.db")

    def no_model(spec: str) -> ScriptedLLM:
        return ScriptedLLM(lambda req: AssertionError("replay must not call the model"))

    rep = await run_experiment(cfg(cache="replay"), out_dir=tmp_path / "rep", llm_factory=no_model)
    assert rep.manifest.status == "completed"
    assert rows(tmp_path / "rep") == rows(tmp_path / "a")


async def test_a_duplicate_vote_reasks_only_the_items_it_left_without_a_vote() -> None:
    """A post voted twice re-asked the whole 40-item chunk (and took the second answer's votes
    for every item); now the votes given unambiguously are kept and only the items left without
    one (voted twice differently, or left out) are asked again, in a request of their own."""
    theirs = [i.post_id for i in ITEMS if i.author != ME][:40]
    asked: list[list[int]] = []

    def answer(req: LLMRequest) -> Any:
        ids = _ids(req)
        asked.append(ids)
        if (
            len(asked) == 1
        ):  # theirs[1] twice, differently; theirs[2] twice alike; theirs[3] left out
            votes = [{"post_id": i, "vote": 1} for i in ids if i != ids[3]]
            return {
                "votes": [*votes, {"post_id": ids[1], "vote": -1}, {"post_id": ids[2], "vote": 1}]
            }
        return {"votes": [{"post_id": i, "vote": -1} for i in ids]}

    policy = make_llm_policy(
        PERSONAS[0],
        ScriptedLLM(answer),
        theme="climate change",
        config=LLMPolicyConfig(vote_chunk=40),
    )
    ballot = await policy.vote(_obs(), ITEMS[:47])
    assert asked[0] == theirs and asked[1] == [theirs[1], theirs[3]] and len(asked) == 2
    assert not ballot.failures
    assert ballot.votes == {i: (-1 if i in (theirs[1], theirs[3]) else 1) for i in theirs}


async def test_items_still_without_a_vote_are_a_failure_beside_the_votes_obtained() -> None:
    theirs = [i.post_id for i in ITEMS if i.author != ME][:5]
    asked: list[list[int]] = []

    def answer(req: LLMRequest) -> Any:
        ids = _ids(req)
        asked.append(ids)
        return {"votes": [{"post_id": i, "vote": 1} for i in ids if i != theirs[4]]}

    policy = make_llm_policy(
        PERSONAS[0], ScriptedLLM(answer), theme="climate change",
        config=LLMPolicyConfig(vote_chunk=40, max_retries=2),
    )  # fmt: skip
    ballot = await policy.vote(_obs(), tuple(i for i in ITEMS if i.post_id in theirs))
    assert asked[0] == theirs and len(asked) == 3  # 1 + max_retries requests in all
    assert ballot.votes == dict.fromkeys(theirs[:4], 1)
    (failure,) = ballot.failures
    assert failure.stage == "vote" and failure.reason == "missing_votes"
    assert str(theirs[4]) in failure.detail and failure.attempts == 3


async def test_a_narrowed_re_ask_answered_with_the_whole_chunk_keeps_its_votes() -> None:
    """Asked again for the two items its first answer left without a vote, a model often
    answers for the whole list once more. Those repeats were an ``unknown_post`` that threw
    the whole answer away (and, with no retry left, the two items became a failure); now they
    are passed over, the first answer's votes stand, and the two items get the new votes."""
    theirs = [i.post_id for i in ITEMS if i.author != ME][:6]
    asked: list[list[int]] = []

    def answer(req: LLMRequest) -> Any:
        ids = _ids(req)
        asked.append(ids)
        if len(asked) == 1:
            return {"votes": [{"post_id": i, "vote": 1} for i in ids if i not in theirs[4:]]}
        return {"votes": [{"post_id": i, "vote": -1} for i in theirs]}

    policy = make_llm_policy(
        PERSONAS[0], ScriptedLLM(answer), theme="climate change",
        config=LLMPolicyConfig(vote_chunk=40, max_retries=1),
    )  # fmt: skip
    ballot = await policy.vote(_obs(), tuple(i for i in ITEMS if i.post_id in theirs))
    assert asked == [theirs, theirs[4:]]
    assert not ballot.failures
    assert ballot.votes == {**dict.fromkeys(theirs[:4], 1), **dict.fromkeys(theirs[4:], -1)}


async def test_a_narrowed_re_ask_still_refuses_a_post_that_was_never_offered() -> None:
    theirs = [i.post_id for i in ITEMS if i.author != ME][:6]
    stranger = max(i.post_id for i in ITEMS) + 1
    asked: list[list[int]] = []

    def answer(req: LLMRequest) -> Any:
        ids = _ids(req)
        asked.append(ids)
        if len(asked) == 1:
            return {"votes": [{"post_id": i, "vote": 1} for i in ids if i != theirs[5]]}
        return {"votes": [{"post_id": theirs[5], "vote": 1}, {"post_id": stranger, "vote": 1}]}

    policy = make_llm_policy(
        PERSONAS[0], ScriptedLLM(answer), theme="climate change",
        config=LLMPolicyConfig(vote_chunk=40, max_retries=1),
    )  # fmt: skip
    ballot = await policy.vote(_obs(), tuple(i for i in ITEMS if i.post_id in theirs))
    assert asked == [theirs, [theirs[5]]]
    assert ballot.votes == dict.fromkeys(theirs[:5], 1)
    (failure,) = ballot.failures
    assert failure.reason == "unknown_post" and str(stranger) in failure.detail
