"""Agent policy benchmark: baseline cost per action, LLM-policy overhead, prompt growth per round.

A small in-memory world (no platform, no model): each round every agent decides, public actions
become the next round's feed (all public content of the previous round, as in the paper), DMs
go to inboxes, votes are cast on the round's items. The LLM policy runs against a ScriptedLLM
whose plans come from a per-agent baseline policy (so plans are valid and varied) and whose
texts are fixed-length, so prompt sizes are realistic and the model costs nothing.

    .venv/bin/python bench/agents_policy.py [--quick]

Prints, as its final line, one JSON object of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from friendsim.agents import (
    generate_personas,
    make_baseline_policy,
    make_llm_policy,
)
from friendsim.agents.baseline import BaselinePolicy
from friendsim.llm import ScriptedLLM
from friendsim.llm.base import LLMRequest
from friendsim.vocabulary import (
    Action,
    FeedItem,
    InboxMessage,
    Observation,
)

TEXT = "I think we should look at the numbers before deciding, but honestly the heat this summer worried me a lot. "


def _plan_json(actions: tuple[Action, ...]) -> dict[str, Any]:
    return {
        "actions": [
            {
                "type": a.type,
                "target_post": a.target_post,
                "recipient": a.recipient,
                "topic": a.topic,
                "mention": a.mention is not None,
                "mention_user": a.mention,
                "tone": a.tone,
            }
            for a in actions
        ]
    }


async def run_world(n_agents: int, rounds: int, *, llm_mode: bool, seed: int = 0) -> dict[str, Any]:
    personas = generate_personas(n_agents, seed=seed)
    ids = tuple(p.id for p in personas)
    stances = {p.id: p.stance_score for p in personas}
    current_obs: dict[str, Observation] = {}
    planners = {p.id: make_baseline_policy(p, seed=seed, stances=stances) for p in personas}

    def responder_for(agent: str, planner: BaselinePolicy) -> Any:
        def fn(req: LLMRequest) -> Any:
            match req.label:
                case "plan":
                    return _plan_json(planner.choose(current_obs[agent]))
                case "vote":
                    schema: Any = req.json_schema
                    ids_ = schema["properties"]["votes"]["items"]["properties"]["post_id"]["enum"]
                    return {"votes": [{"post_id": i, "vote": 1 if i % 3 else 0} for i in ids_]}
                case _:
                    return TEXT

        return fn

    if llm_mode:
        policies: dict[str, Any] = {
            p.id: make_llm_policy(
                p, ScriptedLLM(responder_for(p.id, planners[p.id])), theme="climate change"
            )
            for p in personas
        }
    else:
        policies = {p.id: make_baseline_policy(p, seed=seed + 1, stances=stances) for p in personas}

    feed: tuple[FeedItem, ...] = ()
    inbox: dict[str, list[InboxMessage]] = {a: [] for a in ids}
    next_post, next_dm = 1, 1
    tokens_by_round: dict[int, list[int]] = {}
    decide_s = 0.0
    vote_s = 0.0
    n_actions = 0
    n_votes = 0
    failures = 0
    for w in range(1, rounds + 1):
        new_items: list[FeedItem] = []
        new_inbox: dict[str, list[InboxMessage]] = {a: [] for a in ids}
        decisions = {}
        for a in ids:
            obs = Observation(
                agent_id=a, window=w, now=float(w), theme="climate change", n_actions=3,
                allowed=("POST",) if w == 1 else ("POST", "COM", "DM", "NOT"),
                feed=feed, inbox=tuple(inbox[a]), known_users=ids,
                topics=tuple(sorted({i.topic for i in feed})),
            )  # fmt: skip
            current_obs[a] = obs
            t0 = time.perf_counter()
            d = await policies[a].decide(obs)
            decide_s += time.perf_counter() - t0
            decisions[a] = d
            n_actions += len(d.actions)
            failures += len(d.failures)
            tokens_by_round.setdefault(w, []).append(d.prompt_tokens)
        for a in ids:
            d = decisions[a]
            for act in d.actions:
                match act.type:
                    case "POST" | "COM":
                        new_items.append(
                            FeedItem(post_id=next_post, author=a, text=act.text, topic=act.topic,
                                     parent_id=act.target_post, mentions=(act.mention,) if act.mention else ())
                        )  # fmt: skip
                        next_post += 1
                    case "DM" if act.recipient is not None:
                        new_inbox[act.recipient].append(
                            InboxMessage(dm_id=next_dm, sender=a, text=act.text, topic=act.topic)
                        )
                        next_dm += 1
                    case _:
                        pass
            policies[a].record_outcome(w, d.actions)
        round_items = tuple(new_items)
        for a in ids:
            t0 = time.perf_counter()
            ballot = await policies[a].vote(current_obs[a], round_items)
            vote_s += time.perf_counter() - t0
            n_votes += len(ballot.votes)
            failures += len(ballot.failures)
        feed, inbox = round_items, new_inbox
    means = {w: statistics.fmean(v) for w, v in tokens_by_round.items()}
    return {
        "decide_s": decide_s,
        "vote_s": vote_s,
        "n_actions": n_actions,
        "n_votes": n_votes,
        "failures": failures,
        "tokens": means,
        "decides": n_agents * rounds,
    }


async def main(quick: bool) -> dict[str, Any]:
    agents, rounds = (30, 15)
    base = await run_world(agents, rounds if quick else 50, llm_mode=False)
    llm = await run_world(agents, rounds, llm_mode=True)
    t = llm["tokens"]
    return {
        "agents": agents,
        "rounds_baseline": rounds if quick else 50,
        "rounds_llm": rounds,
        "baseline_us_per_action": round(1e6 * base["decide_s"] / max(1, base["n_actions"]), 2),
        "baseline_us_per_vote": round(1e6 * base["vote_s"] / max(1, base["n_votes"]), 3),
        "llm_policy_overhead_ms_per_decide": round(1e3 * llm["decide_s"] / llm["decides"], 3),
        "llm_failures": llm["failures"],
        "prompt_tokens_round2_mean": round(t[2], 1),
        "prompt_tokens_round3_mean": round(t[3], 1),
        "prompt_tokens_round15_mean": round(t[15], 1),
        "prompt_ratio_r15_over_r3": round(t[15] / t[3], 3),
        "prompt_tokens_max_round_mean": round(max(v for k, v in t.items() if k >= 2), 1),
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="baseline over 15 rounds instead of 50")
    args = ap.parse_args()
    figures = asyncio.run(main(args.quick))
    for k, v in figures.items():
        print(f"{k:36s} {v}")
    print(json.dumps(figures))
