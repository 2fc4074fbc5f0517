"""The LLM policy against a scripted model: valid plans, re-asks, failures, garbage, votes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from friendsim.agents import (
    LLMPolicy,
    generate_personas,
    make_llm_policy,
)
from friendsim.agents.schema import parse_plan
from friendsim.llm import ScriptedLLM
from friendsim.llm.base import Completion, LLMRequest
from friendsim.llm.errors import CacheMissError, ServerError
from friendsim.vocabulary import (
    Action,
    FeedItem,
    InboxMessage,
    Observation,
)

PERSONAS = generate_personas(6, seed=2)
ME = PERSONAS[0].id
USERS = tuple(p.id for p in PERSONAS)


def _feed() -> tuple[FeedItem, ...]:
    return (
        FeedItem(post_id=10, author=USERS[1], text="Heat waves are getting worse.", topic="heat"),
        FeedItem(post_id=11, author=ME, text="We need more trains.", topic="transport"),
        FeedItem(
            post_id=12, author=USERS[2], text="Nuclear is the answer.", topic="energy", parent_id=11
        ),
    )


def _obs(**over: Any) -> Observation:
    base: dict[str, Any] = dict(
        agent_id=ME, window=2, now=10.0, theme="climate change", n_actions=3, feed=_feed(),
        inbox=(InboxMessage(dm_id=5, sender=USERS[3], text="Hi, how are you?", topic="chat"),),
        known_users=USERS, topics=("heat", "transport", "energy"),
    )  # fmt: skip
    base.update(over)
    return Observation(**base)


def _act(type_: str, **over: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"type": type_, "target_post": None, "recipient": None, "topic": "heat",
                         "mention": False, "mention_user": None, "tone": "neutral"}  # fmt: skip
    a.update(over)
    return a


GOOD_PLAN = {
    "actions": [
        _act("POST", topic="Heat Waves", mention=True, mention_user=USERS[1], tone="supportive"),
        _act("COM", target_post=12, tone="critical"),
        _act("DM", recipient=USERS[3], topic="chat"),
    ]
}


def responder(
    plan: Any, text: str = "Trains beat traffic, honestly.", votes: Any = None
) -> Callable[[LLMRequest], Any]:
    def fn(req: LLMRequest) -> Any:
        match req.label:
            case "plan":
                return plan if not callable(plan) else plan(req)
            case "vote":
                if votes is not None:
                    return votes
                ids = req.json_schema["properties"]["votes"]["items"]["properties"]["post_id"][
                    "enum"
                ]
                return {"votes": [{"post_id": i, "vote": 1 if i % 2 else -1} for i in ids]}
            case _:
                return text

    return fn


async def test_valid_plan_gives_n_actions_with_text() -> None:
    llm = ScriptedLLM(responder(GOOD_PLAN))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change", n_actions=3, rng_seed=1)
    d = await policy.decide(_obs())
    assert d.failures == ()
    assert [a.type for a in d.actions] == ["POST", "COM", "DM"]
    assert all(a.text for a in d.actions)
    post, com, dm = d.actions
    assert (
        post.topic == "heat waves"
        and post.mention == USERS[1]
        and post.text.startswith(f"@{USERS[1]} ")
    )
    assert com.target_post == 12 and com.tone == "critical"
    assert dm.recipient == USERS[3]
    plan_req = llm.calls[0]
    assert plan_req.label == "plan"
    schema = plan_req.json_schema
    assert schema is not None
    assert (
        schema["properties"]["actions"]["minItems"]
        == 3
        == schema["properties"]["actions"]["maxItems"]
    )
    assert [c.label for c in llm.calls[1:]] == ["content"] * 3
    assert d.prompt_tokens > 100
    assert d.prompt_tokens == policy.last_prompt_tokens
    # the COM prompt shows the target post, the DM prompt the recipient's earlier DM
    assert 'id="12"' in llm.calls[2].messages[0].content
    assert "Hi, how are you?" in llm.calls[3].messages[0].content


def _request_chars(req: LLMRequest) -> int:
    return len(req.system) + sum(len(m.content) for m in req.messages)


@pytest.mark.parametrize("field", ["type", "recipient"])
async def test_a_huge_value_in_a_plan_does_not_grow_the_reasks(field: str) -> None:
    """Model output is untrusted: a 100,000-character value is quoted cut in the error shown
    back on each re-ask (and stored in the log), so the re-asks stay the size of a plan prompt."""
    huge = "X" * 100_000
    bad = _act("DM", recipient=huge) if field == "recipient" else _act(huge)
    plan = {"actions": [bad, _act("POST"), _act("POST")]}
    llm = ScriptedLLM(responder(lambda req: Completion(text="", model="m", parsed=plan)))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert [a.type for a in d.actions] == ["POST", "POST"]
    (failure,) = d.failures
    assert failure.reason in ("bad_type", "unknown_recipient") and len(failure.detail) < 300
    plans = [c for c in llm.calls if c.label == "plan"]
    assert len(plans) == 4  # the plan, then action 1 re-asked alone three times
    first = _request_chars(plans[0])
    assert all(_request_chars(c) < first + 6_000 for c in plans), [_request_chars(c) for c in plans]


NOT_A_PLAN: dict[str, tuple[Any, str]] = {
    "bad_json": ("{actions: [POST", "bad_json"),
    "not_an_object": ("[1, 2, 3]", "bad_schema"),
}


@pytest.mark.parametrize("case", sorted(NOT_A_PLAN))
async def test_answer_that_is_no_plan_is_reasked_whole_then_failure(case: str) -> None:
    plan, reason = NOT_A_PLAN[case]
    llm = ScriptedLLM(responder(plan))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert d.actions == ()
    assert len(d.failures) == 1
    f = d.failures[0]
    assert (f.stage, f.reason, f.attempts) == ("plan", reason, 4)
    assert [c.label for c in llm.calls] == ["plan"] * 4
    last = llm.calls[-1]
    assert len(last.messages) == 7  # prompt + 3 x (bad answer, error)
    assert last.messages[-1].role == "user" and "invalid" in last.messages[-1].content
    assert f.detail in last.messages[-1].content
    assert len({c.seed for c in llm.calls}) == 4  # re-asks are distinct requests


BAD_ACTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown_recipient": (_act("DM", recipient="ghost"), "unknown_recipient"),
    "self_dm": (_act("DM", recipient=ME), "self_target"),
    "null_recipient": (_act("DM", recipient=None), "missing_recipient"),
    "unknown_post": (_act("COM", target_post=999), "unknown_post"),
    "bad_type": (_act("LIKE", target_post=10), "bad_type"),
    "bad_tone": (_act("POST", tone="furious"), "bad_schema"),
}


@pytest.mark.parametrize("case", sorted(BAD_ACTIONS))
async def test_invalid_action_is_reasked_alone_then_dropped(case: str) -> None:
    bad, reason = BAD_ACTIONS[case]
    plan = {"actions": [bad, _act("NOT"), _act("NOT")]}  # each re-ask answers `bad` again
    llm = ScriptedLLM(responder(plan))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    # the plan's valid actions stand; the invalid one is dropped with one failure
    assert [a.type for a in d.actions] == ["NOT", "NOT"]
    assert len(d.failures) == 1
    f = d.failures[0]
    assert (f.stage, f.reason, f.attempts) == ("plan", reason, 4)
    assert f.detail.startswith("action 1")
    assert f.action is not None and f.action["type"] == bad["type"]
    assert [c.label for c in llm.calls] == ["plan"] * 4  # the plan, then 3 re-asks of action 1
    for reask in llm.calls[1:]:
        assert reask.messages[0] == llm.calls[0].messages[0]  # the plan prompt as history
        assert (
            reask.messages[1].role == "assistant" and json.loads(reask.messages[1].content) == plan
        )
        assert (
            "action 1" in reask.messages[2].content
            and "other actions stand" in reask.messages[2].content
        )
        assert reask.json_schema is not None
        assert reask.json_schema["properties"]["actions"]["maxItems"] == 1
    assert len({c.seed for c in llm.calls}) == 4


async def test_plan_with_one_invalid_action_keeps_valid_ones_and_reasks_only_that_one() -> None:
    plan = {
        "actions": [
            _act("POST", topic="heat waves"),
            _act("DM", recipient=None, topic="chat"),
            _act("COM", target_post=12, tone="critical"),
        ]
    }
    fixed = {"actions": [_act("DM", recipient=USERS[3], topic="chat")]}

    def answer(req: LLMRequest) -> Any:
        return fixed if len(req.messages) > 1 else plan

    llm = ScriptedLLM(responder(answer))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert d.failures == ()
    assert [a.type for a in d.actions] == ["POST", "DM", "COM"]
    assert d.actions[1].recipient == USERS[3] and d.actions[2].target_post == 12
    plans = [c for c in llm.calls if c.label == "plan"]
    assert len(plans) == 2  # the plan and ONE re-ask, for action 2 only
    reask = plans[1]
    assert (
        "action 2" in reask.messages[-1].content
        and "missing_recipient" not in reask.messages[-1].content
    )
    assert "recipient" in reask.messages[-1].content
    assert (
        reask.json_schema is not None
        and reask.json_schema["properties"]["actions"]["minItems"] == 1
    )
    assert [c.label for c in llm.calls[2:]] == ["content"] * 3


async def test_short_plan_asks_for_the_missing_action_alone() -> None:
    answers = iter([{"actions": GOOD_PLAN["actions"][:2]}, {"actions": [_act("NOT")]}])
    llm = ScriptedLLM(responder(lambda req: next(answers)))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert d.failures == ()
    assert [a.type for a in d.actions] == ["POST", "COM", "NOT"]
    assert "action 3" in llm.calls[1].messages[-1].content


async def test_bad_then_good_plan_recovers() -> None:
    answers = iter(["not json at all", GOOD_PLAN])
    llm = ScriptedLLM(responder(lambda req: next(answers)))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert d.failures == ()
    assert len(d.actions) == 3
    assert [c.label for c in llm.calls[:2]] == ["plan"] * 2
    assert "not valid JSON" in llm.calls[1].messages[-1].content


async def test_tone_word_topics_are_replaced_by_a_subject() -> None:
    plan = {
        "actions": [
            _act("POST", topic="supportive"),
            _act("COM", target_post=12, topic="Supportive, neutral"),
            _act("DM", recipient=USERS[3], topic="topic"),
        ]
    }
    llm = ScriptedLLM(responder(plan))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(_obs())
    assert d.failures == ()
    assert [a.topic for a in d.actions] == ["climate change", "energy", "climate change"]


async def test_code_fenced_json_is_accepted() -> None:
    fenced = "Sure! Here is my plan:\n```json\n" + json.dumps(GOOD_PLAN) + "\n```"
    llm = ScriptedLLM(responder(fenced))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(_obs())
    assert len(d.actions) == 3 and d.failures == ()


async def test_empty_content_drops_action_with_failure() -> None:
    llm = ScriptedLLM(responder(GOOD_PLAN, text="   "))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(_obs())
    assert d.actions == ()
    assert [f.stage for f in d.failures] == ["content"] * 3
    assert all(f.attempts == 4 and f.reason == "empty_text" for f in d.failures)
    assert d.failures[2].action is not None and d.failures[2].action["recipient"] == USERS[3]


async def test_long_text_is_cut_and_not_action_needs_no_text() -> None:
    plan = {"actions": [_act("POST"), _act("NOT"), _act("NOT")]}
    llm = ScriptedLLM(responder(plan, text="word " * 200))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(_obs())
    assert [a.type for a in d.actions] == ["POST", "NOT", "NOT"]
    assert 0 < len(d.actions[0].text) <= 280
    assert [c.label for c in llm.calls] == ["plan", "content"]


async def test_provider_error_becomes_failure_but_cache_miss_propagates() -> None:
    llm = ScriptedLLM(responder(lambda req: ServerError("boom", status=503)))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(_obs())
    assert (
        d.actions == () and d.failures[0].reason == "llm_error" and "boom" in d.failures[0].detail
    )
    miss = ScriptedLLM(responder(lambda req: CacheMissError("k" * 64, "plan", "x")))
    with pytest.raises(CacheMissError):
        await make_llm_policy(PERSONAS[0], miss, theme="climate change").decide(_obs())


async def test_round_one_forced_posts() -> None:
    plan = {"actions": [_act("COM", target_post=10), _act("POST"), _act("POST")]}
    llm = ScriptedLLM(responder(plan))
    d = await make_llm_policy(PERSONAS[0], llm, theme="climate change").decide(
        _obs(window=1, allowed=("POST",), feed=(), inbox=())
    )
    assert d.failures[0].reason == "bad_type"
    assert llm.calls[0].json_schema["properties"]["actions"]["items"]["properties"]["type"][
        "enum"
    ] == ["POST"]


async def test_vote_valid_and_excludes_own_items() -> None:
    llm = ScriptedLLM(responder(GOOD_PLAN))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    ballot = await policy.vote(_obs(), _feed())
    assert ballot.failures == ()
    assert ballot.votes == {10: -1, 12: -1}  # item 11 is mine
    prompt = llm.calls[0].messages[0].content
    assert 'relationship="no previous interaction"' in prompt
    assert policy.memory.relations[USERS[1]].dislikes_given == 1


async def test_vote_invalid_reasked_then_failure() -> None:
    llm = ScriptedLLM(responder(GOOD_PLAN, votes={"votes": [{"post_id": 10, "vote": 1}]}))
    ballot = await make_llm_policy(PERSONAS[0], llm, theme="climate change").vote(_obs(), _feed())
    # the one vote given is kept; the items left out are asked again (the model answers post 10
    # again, already voted, so passed over: no vote for them), then are the failure
    assert ballot.votes == {10: 1}
    (failure,) = ballot.failures
    assert failure.stage == "vote" and failure.reason == "missing_votes"
    assert "still without a vote" in failure.detail and failure.attempts == 4
    assert len(llm.calls) == 4


async def test_vote_chunks_large_item_sets() -> None:
    items = tuple(
        FeedItem(post_id=100 + i, author=USERS[1 + i % 5], text=f"t{i}", topic="x")
        for i in range(95)
    )
    llm = ScriptedLLM(responder(GOOD_PLAN))
    ballot = await make_llm_policy(PERSONAS[0], llm, theme="climate change").vote(
        _obs(feed=items), items
    )
    assert len(llm.calls) == 3  # 40 + 40 + 15
    assert sorted(ballot.votes) == [i.post_id for i in items]


# --- hypothesis: garbage never raises ---------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids, max_size=4)
    ),
    max_leaves=20,
)
action_like = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["POST", "COM", "DM", "NOT", "LIKE", "post", "", "X"])
        | st.integers(),
        "target_post": st.sampled_from([10, 11, 12, 999, None, "10", -1]) | json_values,
        "recipient": st.sampled_from([*USERS, "ghost", None, "", f"@{USERS[1]}"]) | json_values,
        "topic": st.text(max_size=30) | json_values,
        "mention": st.booleans() | json_values,
        "mention_user": st.sampled_from([*USERS, None, "nobody"]) | json_values,
        "tone": st.sampled_from(["supportive", "neutral", "critical", "angry"]) | json_values,
    },
)
garbage = st.one_of(
    st.text(max_size=200),
    json_values,
    json_values.map(json.dumps),
    st.lists(action_like, max_size=5).map(lambda acts: {"actions": acts}),
    st.lists(action_like, max_size=5).map(lambda acts: json.dumps({"actions": acts}, default=str)),
)


def _valid(actions: tuple[Action, ...], obs: Observation, *, exact: bool = True) -> bool:
    ok = len(actions) == obs.n_actions if exact else len(actions) <= obs.n_actions
    shown = {i.post_id for i in obs.feed}
    for a in actions:
        ok &= a.type in obs.allowed
        if a.type == "COM":
            ok &= a.target_post in shown
        if a.type == "DM":
            ok &= a.recipient in obs.known_users and a.recipient != ME
        if a.type in ("POST", "COM", "DM"):
            ok &= bool(a.text)
    return ok


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=garbage, text=garbage, votes=garbage)
def test_garbage_model_output_never_raises(plan: Any, text: Any, votes: Any) -> None:
    def content(req: LLMRequest) -> Any:
        return text if isinstance(text, str | dict) else json.dumps(text)

    def fn(req: LLMRequest) -> Any:
        match req.label:
            case "plan":
                return plan if isinstance(plan, str | dict) else json.dumps(plan)
            case "vote":
                return votes if isinstance(votes, str | dict) else json.dumps(votes)
            case _:
                return content(req)

    async def go() -> None:
        policy: LLMPolicy = make_llm_policy(PERSONAS[0], ScriptedLLM(fn), theme="climate change")
        obs = _obs()
        d = await policy.decide(obs)
        assert all(f.stage in ("plan", "content") and f.attempts >= 1 for f in d.failures)
        assert _valid(d.actions, obs, exact=False)
        # no plan at all: one failure and no action; else each slot is an action or a failure
        assert (not d.actions and len(d.failures) == 1) or len(d.actions) + len(
            d.failures
        ) == obs.n_actions
        b = await policy.vote(obs, obs.feed)
        if b.failures:
            assert b.votes == {} and b.failures[0].stage == "vote"
        else:
            assert set(b.votes) == {10, 12} and set(b.votes.values()) <= {-1, 0, 1}
        policy.record_outcome(obs.window, d.actions)

    asyncio.run(go())


@given(value=json_values | st.lists(action_like, max_size=4).map(lambda a: {"actions": a}))
@settings(max_examples=300, deadline=None)
def test_parse_plan_only_raises_output_error(value: Any) -> None:
    from friendsim.agents.schema import OutputError

    obs = _obs()
    try:
        actions = parse_plan(value, obs, shown=obs.feed, self_id=ME)
    except OutputError as err:
        assert err.reason and err.detail
    else:
        assert len(actions) == 3


async def test_votes_on_items_outside_the_feed_update_relationships() -> None:
    items = (FeedItem(post_id=50, author=USERS[4], text="new this round", topic="x"),)
    llm = ScriptedLLM(responder(GOOD_PLAN, votes={"votes": [{"post_id": 50, "vote": 1}]}))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    ballot = await policy.vote(_obs(feed=()), items)
    assert ballot.votes == {50: 1}
    assert policy.memory.relations[USERS[4]].likes_given == 1
    assert "you liked 1/disliked 0 of theirs" in policy.memory.relationship_line(USERS[4])


async def test_record_outcome_feeds_next_plan_prompt() -> None:
    llm = ScriptedLLM(responder(GOOD_PLAN))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    policy.record_outcome(2, d.actions)
    await policy.decide(_obs(window=3))
    prompt = llm.calls[-4].messages[0].content
    assert llm.calls[-4].label == "plan"
    assert f"Last window w2: POST on 'heat waves' @{USERS[1]} (supportive)" in prompt
    assert f"- {USERS[3]}: you sent 1, received 1" in prompt


@pytest.mark.parametrize("who", [ME, "", None, "nobody-here"])
async def test_bad_optional_mention_is_repaired_not_rejected(who: str | None) -> None:
    plan = {"actions": [_act("POST", mention=True, mention_user=who), _act("NOT"), _act("NOT")]}
    llm = ScriptedLLM(responder(plan))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    d = await policy.decide(_obs())
    assert d.failures == ()
    assert [a.type for a in d.actions] == ["POST", "NOT", "NOT"]
    assert d.actions[0].mention is None


async def test_plan_schema_enumerates_known_users_and_shown_posts() -> None:
    plan = {"actions": [_act("NOT"), _act("NOT"), _act("NOT")]}
    llm = ScriptedLLM(responder(plan))
    policy = make_llm_policy(PERSONAS[0], llm, theme="climate change")
    obs = _obs()
    await policy.decide(obs)
    schema = llm.calls[0].json_schema
    assert schema is not None
    variants = {
        v["properties"]["type"]["enum"][0]: v["properties"]
        for v in schema["properties"]["actions"]["items"]["anyOf"]
    }
    assert set(variants) == set(obs.allowed)
    users = set(obs.known_users) - {ME}
    # a DM must name a known user (never null), a COM a shown post; POST/NOT neither
    assert variants["DM"]["recipient"] == {
        "type": "string",
        "enum": sorted(users),
        "description": "user id the DM goes to",
    }
    assert variants["DM"]["target_post"] == {"type": "null"}
    assert set(variants["COM"]["target_post"]["enum"]) == {i.post_id for i in obs.feed}
    assert variants["COM"]["target_post"]["type"] == "integer"
    assert variants["COM"]["recipient"] == {"type": "null"}
    assert variants["POST"]["recipient"] == variants["POST"]["target_post"] == {"type": "null"}
    mention = variants["POST"]["mention_user"]["anyOf"]
    assert mention == [{"type": "string", "enum": sorted(users)}, {"type": "null"}]
    assert variants["POST"]["topic"]["maxLength"] > 0
    for props in variants.values():
        assert list(props) == ["type", "target_post", "recipient", "topic", "mention",
                               "mention_user", "tone"]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # cut by max_tokens mid-sentence: the unfinished sentence goes
        ("Heat is rising fast. We need shade in every street and", "Heat is rising fast."),
        # a small model looping on one sentence: each sentence once
        ("I'm here to support you. I'm here to support you. I'm here to support you!",
         "I'm here to support you."),
        # no complete sentence at all: cut at a word, closed with a full stop
        ("Trains are the answer to", "Trains are the answer to."),
        ('"Warming is 1.5 degrees already." ', "Warming is 1.5 degrees already."),
        ("Is this fair? I doubt it.", "Is this fair? I doubt it."),
    ],
)  # fmt: skip
def test_texts_end_at_a_sentence_boundary(raw: str, expected: str) -> None:
    from friendsim.agents.llm_policy import clean_text
    from friendsim.llm.base import Completion

    assert clean_text(Completion(text=raw, model="m"), max_chars=280) == expected


def test_long_texts_are_cut_to_whole_sentences_within_the_limit() -> None:
    from friendsim.agents.llm_policy import sentence_text

    text = "One short sentence. " + "A much longer second sentence follows here. " * 3
    assert sentence_text(text, 40) == "One short sentence."
    assert (
        sentence_text("word " * 50, 30).endswith(".") and len(sentence_text("word " * 50, 30)) <= 30
    )


async def test_compact_profile_shortens_prompts_and_stops_texts_at_a_blank_line() -> None:
    from friendsim.agents.llm_policy import LLMPolicyConfig, profile_knobs

    assert profile_knobs("auto", "local:smollm2")["compact"] is True
    assert profile_knobs("auto", "openai:gpt-4o-mini") == {}
    with pytest.raises(ValueError, match="unknown prompt profile"):
        profile_knobs("tiny", "local:smollm2")
    feed = tuple(
        FeedItem(post_id=100 + i, author=USERS[1 + i % 5], text="long words " * 60, topic="heat")
        for i in range(30)
    )
    prompts = {}
    for name in ("full", "compact"):
        llm = ScriptedLLM(responder(GOOD_PLAN))
        config = LLMPolicyConfig(**profile_knobs(name, "local:smollm2"))
        policy = make_llm_policy(PERSONAS[0], llm, theme="climate change", config=config)
        await policy.decide(_obs(feed=(*_feed(), *feed)))
        prompts[name] = llm.calls[0]
        content = [c for c in llm.calls if c.label == "content"]
        assert content and all(c.stop == (("\n\n",) if name == "compact" else ()) for c in content)
    full, compact = prompts["full"], prompts["compact"]
    assert len(compact.system) < 0.6 * len(full.system)
    assert len(compact.messages[0].content) < 0.5 * len(full.messages[0].content)
    assert compact.messages[0].content.count("<post ") == 12


def _tip(action: str, target: str | None = None) -> Any:
    from friendsim.vocabulary import Tip

    return Tip(action=action, target=target, topic="heat", invite_mention=False, tone="neutral",
               text=f"Do a {action}.")  # fmt: skip


def _listed_types(prompt: str) -> list[str]:
    block = prompt.split("ction types:\n", 1)[1].split("\n\n", 1)[0]
    return [line[2:].split(":", 1)[0] for line in block.splitlines()]


def _schema_types(schema: Any) -> list[str]:
    items = schema["properties"]["actions"]["items"]
    variants = items.get("anyOf", [items])
    return [v["properties"]["type"]["enum"][0] for v in variants]


async def test_compact_profile_offers_the_coachs_suggested_action_types_first() -> None:
    from friendsim.agents.llm_policy import LLMPolicyConfig, profile_knobs

    tips = (_tip("DM", USERS[3]), _tip("LIKE"), _tip("COM"), _tip("DM", USERS[2]))
    obs = _obs(guidance=tips)
    default = list(obs.allowed)
    assert default.index("DM") > default.index("POST")  # the tips must reorder something
    seen = {}
    for name in ("full", "compact"):
        llm = ScriptedLLM(responder(GOOD_PLAN))
        config = LLMPolicyConfig(**profile_knobs(name, "local:smollm2"))
        policy = make_llm_policy(PERSONAS[0], llm, theme="climate change", config=config)
        decision = await policy.decide(obs)
        assert [a.type for a in decision.actions] == ["POST", "COM", "DM"]
        plan = llm.calls[0]
        seen[name] = (_listed_types(plan.messages[0].content), _schema_types(plan.json_schema))
    assert seen["full"][0] == default
    compact_listed, compact_schema = seen["compact"]
    # tip order (DM, COM; LIKE is not allowed here, the second DM tip counts once), then the
    # rest in the usual order
    assert "LIKE" not in default
    rest = [t for t in default if t not in ("DM", "COM")]
    assert compact_listed == ["DM", "COM", *rest]
    assert f"(one of {', '.join(compact_listed)})" in llm.calls[0].messages[0].content
    assert compact_schema == [t for t in compact_listed if t in compact_schema]
    assert sorted(compact_listed) == sorted(default)


def test_tips_for_types_that_are_not_allowed_change_nothing() -> None:
    from friendsim.agents.prompting import tips_first_order

    obs = _obs(guidance=(_tip("FOLLOW", USERS[1]),), allowed=("POST", "COM", "NOT"))
    assert tips_first_order(obs) == ("POST", "COM", "NOT")
    assert tips_first_order(_obs(allowed=("POST", "COM"))) == ("POST", "COM")
