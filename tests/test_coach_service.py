"""CoachService over a real Platform (SQLite file + bus): live scores == scores of the stored log."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from friendsim.analysis.rewards import RewardParams, RewardScorer, score_log
from friendsim.analysis.sentiment import LexiconSentiment
from friendsim.coach.base import FakeCoach
from friendsim.coach.llm import LLMCoach
from friendsim.coach.rule import RuleCoach
from friendsim.coach.service import CoachService, CoachServiceError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.platform import FullVisibilityRanker, Platform, PlatformError
from friendsim.platform.events import ActionFailed, GuidanceIssued, WindowEnded, WindowStarted
from friendsim.vocabulary import Tip

AGENTS = ["ana", "ben", "cai", "dee"]
TEXTS = ["great idea thanks", "this is wrong and bad", "hello", "love it", "not good"]
TOPICS = ["solar", "wind", "Carbon Tax", "farming"]
PARAMS = RewardParams(sentiment="lexicon")
LAMBDAS = {"ana": {"SOC": 1.0}, "ben": {"COORD": 0.5, "EMO": 0.5}}


def scorer() -> RewardScorer:
    return RewardScorer(params=PARAMS, lambdas=LAMBDAS, sentiment=LexiconSentiment())


async def play_window(p: Platform, w: int, rng: random.Random) -> None:
    await p.record(WindowStarted(t=0.0, window=w, mode="rounds"))
    posts: list[int] = []
    for a in AGENTS:
        e = await p.create_post(a, text=rng.choice(TEXTS), topic=rng.choice(TOPICS))
        posts.append(e.post_id)
    for a in AGENTS:
        p.clock.advance_to(p.clock.now() + 1.0)
        for _ in range(3):
            r = rng.random()
            other = rng.choice([x for x in AGENTS if x != a])
            if r < 0.4:
                await p.create_post(
                    a,
                    text=rng.choice(TEXTS),
                    topic=rng.choice(TOPICS),
                    parent_id=rng.choice(posts),
                    mentions=[other] if rng.random() < 0.5 else [],
                )
            elif r < 0.8:
                await p.send_dm(a, other, text=rng.choice(TEXTS))
            else:
                await p.create_post(a, text=rng.choice(TEXTS), topic=rng.choice(TOPICS))
        await p.serve_feed(a, FullVisibilityRanker(), limit=6)
    for a in AGENTS:
        for pid in posts:
            try:
                await p.vote(a, pid, rng.choice([-1, 0, 1, 1]))
            except PlatformError:
                pass  # own post
    await p.record(WindowEnded(t=0.0, window=w))
    await p.flush()


async def run(tmp_path: Path, coach, windows: int = 3, seed: int = 1):
    p = await Platform.open(tmp_path / "events.db")
    svc = CoachService(p, scorer=scorer(), coach=coach, theme="climate", concurrency=2)
    await svc.start()
    for a in AGENTS:
        await p.register_agent(a, name=a.title())
    rng = random.Random(seed)
    live = []
    for w in range(1, windows + 1):
        await play_window(p, w, rng)
        got = await svc.window_done(w)
        assert set(got) == set(AGENTS)
        live.extend(got[a] for a in AGENTS)
    await svc.stop()
    stored = [e async for e in p.events()]
    return p, svc, live, stored


async def test_live_scores_equal_scores_of_the_stored_log(tmp_path: Path) -> None:
    p, svc, live, stored = await run(tmp_path, RuleCoach())
    try:
        replayed = score_log(stored, params=PARAMS, lambdas=LAMBDAS, sentiment=LexiconSentiment())
        assert replayed == live
        assert any(s.components["SOC"] > 0 for s in live)
        assert any(s.components["EMO"] != 0.5 for s in live)
        assert svc.last_scores("ana") == live[-4]
        best = max((s for s in live if s.agent == "ana"), key=lambda s: s.total)
        assert svc.best_scores("ana") is not None
        assert svc.best_scores("ana").total == best.total
        last_fb, best_fb = svc.feedback("ana")
        assert last_fb is not None and last_fb.window == 3 and "post" in last_fb.summary
        assert best_fb is not None and best_fb.total == best.total and best_fb.window == best.window
        assert live[0].total == pytest.approx(live[0].components["SOC"])  # ana: λ_SOC = 1
    finally:
        await p.close()


async def test_rule_coach_records_one_guidance_per_agent_per_window(tmp_path: Path) -> None:
    p, svc, _, stored = await run(tmp_path, RuleCoach())
    try:
        guidance = [e for e in stored if isinstance(e, GuidanceIssued)]
        assert sorted((g.window, g.agent) for g in guidance) == sorted(
            (w, a) for w in (1, 2, 3) for a in AGENTS
        )
        assert all(g.actor == "coach" and g.coach == "rule" for g in guidance)
        assert all(3 <= len(g.tips) <= 5 for g in guidance)
        # guidance of window w comes after WindowEnded(w) and before WindowStarted(w+1)
        ends = {e.window: e.seq for e in stored if isinstance(e, WindowEnded)}
        starts = {e.window: e.seq for e in stored if isinstance(e, WindowStarted)}
        for g in guidance:
            assert ends[g.window] < g.seq < starts.get(g.window + 1, 10**9)
        last = [g for g in guidance if g.agent == "ben"][-1]
        assert svc.latest_guidance("ben") == last.tips
        assert all(isinstance(t, Tip) for t in last.tips)
    finally:
        await p.close()


async def test_no_coach_records_no_guidance(tmp_path: Path) -> None:
    p, svc, live, stored = await run(tmp_path, None)
    try:
        assert not [e for e in stored if isinstance(e, GuidanceIssued)]
        assert len(live) == 3 * len(AGENTS)
        assert svc.latest_guidance("ana") == ()
    finally:
        await p.close()


async def test_failing_coach_is_recorded_and_does_not_stop_the_service(tmp_path: Path) -> None:
    p, _, _, stored = await run(tmp_path, FakeCoach(error=RuntimeError("coach exploded")))
    try:
        failed = [e for e in stored if isinstance(e, ActionFailed)]
        guidance = [e for e in stored if isinstance(e, GuidanceIssued)]
        assert len(failed) == len(guidance) == 3 * len(AGENTS)
        assert all(f.stage == "coach" and "exploded" in f.detail for f in failed)
        assert all(g.coach == "fake:fallback" for g in guidance)
    finally:
        await p.close()


async def test_llm_coach_fallback_records_action_failed(tmp_path: Path) -> None:
    llm = ScriptedLLM(default="no json here")
    p, _, _, stored = await run(tmp_path, LLMCoach(llm, retries=1), windows=1)
    try:
        failed = [e for e in stored if isinstance(e, ActionFailed)]
        assert len(failed) == len(AGENTS)
        assert {f.action["agent"] for f in failed} == set(AGENTS)
        assert all(f.reason == "invalid_output" and f.attempts == 2 for f in failed)
        assert len(llm.calls) == 2 * len(AGENTS)
    finally:
        await p.close()


async def test_resumed_service_does_not_reissue_guidance(tmp_path: Path) -> None:
    p, _, live, stored = await run(tmp_path, RuleCoach(), windows=2)
    await p.close()
    p = await Platform.open(tmp_path / "events.db")
    try:
        svc = CoachService(p, scorer=scorer(), coach=RuleCoach(), concurrency=4)
        await svc.start()
        again = await svc.window_done(2)
        assert [again[a] for a in AGENTS] == live[-4:]
        await p.flush()
        await svc.stop()
        after = [e async for e in p.events()]
        assert after == stored
        assert svc.latest_guidance("dee") != ()
        with pytest.raises(CoachServiceError):
            await svc.window_done(3)
    finally:
        await p.close()


async def test_resume_after_crash_between_window_end_and_guidance(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "events.db")
    for a in AGENTS:
        await p.register_agent(a, name=a)
    await play_window(p, 1, random.Random(3))  # no service running: no guidance logged
    await p.close()
    p = await Platform.open(tmp_path / "events.db")
    try:
        svc = CoachService(p, scorer=scorer(), coach=RuleCoach(), concurrency=4)
        await svc.start()
        await svc.window_done(1)
        await svc.stop()
        guidance = [e async for e in p.events() if isinstance(e, GuidanceIssued)]
        assert sorted(g.agent for g in guidance) == sorted(AGENTS)
    finally:
        await p.close()


@pytest.mark.parametrize("answer", ["be nicer", None, [{"action": "POST"}], "bad-tip"])
async def test_a_plugin_coach_s_wrong_answer_is_its_error_not_a_broken_log(
    tmp_path: Path, answer: object
) -> None:
    """A coach plug-in whose ``advise`` returned a string had it recorded as one tip per
    character: the run blamed the agents' policy and its log could not be read back. A wrong
    answer is now that coach's error: the rule coach's tips stand in, the failure names the
    coach, the run counts the guidance lost, and the log reads back."""
    from friendsim.analysis.rewards_cli import iter_events
    from friendsim.coach.kinds import COACHES
    from friendsim.runtime.assembly import run_experiment
    from friendsim.runtime.config import parse_config

    class OddCoach:
        name = "odd"

        async def advise(self, ctx: object) -> object:
            if answer == "bad-tip":
                return (Tip(action="SHOUT", target=None, topic="t", invite_mention=False,  # type: ignore[arg-type]
                            tone="warm", text="x"),)  # fmt: skip
            return answer

    COACHES.register("odd-coach", lambda **_: OddCoach())
    try:
        cfg = parse_config(
            {
                "experiment": {"name": "o", "seed": 1, "rounds": 2, "n_actions": 1},
                "agents": {"count": 3, "policy": "baseline"},
                "coach": {"enabled": True, "kind": "odd-coach"},
            }
        )
        done = await run_experiment(cfg, out_dir=tmp_path / "r")
    finally:
        COACHES.unregister("odd-coach")
    assert done.manifest.status == "degraded"
    assert done.manifest.totals["lost_guidance"] == 6 and done.manifest.totals["policy_errors"] == 0
    events = list(iter_events(tmp_path / "r" / "events.db"))  # the log reads back
    failed = [e for e in events if isinstance(e, ActionFailed)]
    assert len(failed) == 6 and all(
        f.stage == "coach" and f.reason == "coach_error" and "coach 'odd'" in f.detail
        for f in failed
    )
    guided = [e for e in events if isinstance(e, GuidanceIssued)]
    assert guided and all(g.coach == "odd:fallback" and g.tips for g in guided)
