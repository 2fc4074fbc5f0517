"""Text-based tie evidence with a tiny fake LLM implementing the LLM protocol."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from test_ties import build_log

from friendsim.analysis.ties import TieParams, tie_windows
from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.runtime.tie_scoring import (
    load_template,
    parse_scores,
    score_peers,
    text_evidence,
)


class FakeLLM:
    """Answers with ``reply(request)``; records the requests."""

    def __init__(self, reply: Callable[[LLMRequest], str | dict]) -> None:
        self._reply = reply
        self.requests: list[LLMRequest] = []

    @property
    def model(self) -> str:
        return "fake-tie-scorer"

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        out = self._reply(request)
        if isinstance(out, dict):
            return Completion(text=json.dumps(out), model=self.model, parsed=out)
        return Completion(text=out, model=self.model)

    async def aclose(self) -> None:
        return None


def test_fake_is_an_llm() -> None:
    assert isinstance(FakeLLM(lambda r: "{}"), LLM)


def test_parse_scores_validation() -> None:
    peers = ["b", "c", "d", "e"]
    raw = {
        "scores": [
            {"peer": "b", "score": 4},
            {"peer": "c", "score": 7},  # out of range -> invalid
            {"peer": "d", "score": 3},
            {"peer": "d", "score": 1},  # duplicate -> lowest kept
            {"peer": "zz", "score": 5},  # not asked -> ignored
        ]
    }
    scores, invalid, missing = parse_scores(raw, peers=peers)
    assert scores == {"b": 0.8, "c": 0.0, "d": 0.2, "e": 0.0}
    assert (invalid, missing) == (1, 1)
    assert parse_scores("not json", peers=peers) == (dict.fromkeys(peers, 0.0), 4, 0)
    assert parse_scores({"ratings": []}, peers=peers)[1] == 4
    assert parse_scores('{"scores": [{"peer": "b", "score": "five"}]}', peers=["b"]) == (
        {"b": 0.0},
        1,
        0,
    )


async def test_score_peers_builds_prompt_from_template() -> None:
    llm = FakeLLM(lambda r: {"scores": [{"peer": "c", "score": 5}]})
    ps = await score_peers(llm, viewer="a", peers=["c"], transcript="[DM] a -> c: hi", window=3)
    assert ps.scores == {"c": 1.0} and ps.invalid == 0
    (req,) = llm.requests
    prompt = req.messages[0].content
    assert "[DM] a -> c: hi" in prompt and '"a"' in prompt and "window 3" in prompt
    assert "$" not in prompt  # every placeholder substituted
    assert req.json_schema is not None and req.label == "tie_score"
    assert "Be conservative" in load_template()


async def test_text_evidence_over_log_and_invalid_counted() -> None:
    def reply(req: LLMRequest) -> str | dict:
        prompt = req.messages[0].content
        if 'user "a"' in prompt:
            return {"scores": [{"peer": p, "score": 4} for p in ("b", "c")]}
        if 'user "b"' in prompt:
            return "I think they are friends!"  # invalid -> 0, counted
        return {"scores": []}  # c: missing -> 0

    llm = FakeLLM(reply)
    te = await text_evidence(build_log(), llm, params=TieParams())
    # window 1 active: (a,c), (b,a); window 2: (a,b), (a,c), (b,a); window 4: (c,a)
    assert te.per_window[1] == {("a", "c"): 0.8, ("b", "a"): 0.0}
    assert te.per_window[2] == {("a", "b"): 0.8, ("a", "c"): 0.8, ("b", "a"): 0.0}
    assert te.per_window[3] == {}
    assert te.per_window[4] == {("c", "a"): 0.0}
    assert te.calls == 5 and te.invalid == 2 and te.missing == 1
    # transcripts: a's window-1 prompt shows a's DM to c; b's prompt does not
    prompts = [r.messages[0].content for r in llm.requests]
    a1 = next(p for p in prompts if 'user "a"' in p and "window 1" in p)
    b1 = next(p for p in prompts if 'user "b"' in p and "window 1" in p)
    assert "[DM] a -> c: great idea" in a1 and "great idea" not in b1
    assert "[vote] b liked a's #1" in b1

    wins = tie_windows(
        build_log(),
        params=TieParams(xi=0.1, delta_max=1.0, half_life=1.0, method="text"),
        text_evidence=te.per_window,
    )
    # window 1: (a,c) e = 0.8 → 0.7; (b,a) e = 0 → no tie
    assert dict(wins[0].strengths) == pytest.approx({("a", "c"): 0.7})
