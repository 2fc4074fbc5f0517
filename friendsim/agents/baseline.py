"""The non-LLM baseline policy: seeded, persona-driven choice of the same actions.

It is the null model (same action space, no language model) and the fast default for quick runs
and benchmarks. All randomness comes from one ``random.Random`` seeded from ``(seed, agent id)``,
so a policy's choices are a pure function of its seed and the observations it is given.

How the persona tilts choices (weights are documented, not tuned):

- action type weights grow with λ: PRE -> POST (and REPOST), SOC -> COM and DM, INF -> COM,
  COORD -> DM, EMO -> COM/LIKE; NOT shrinks with extraversion;
- COM targets: INF favours topics the agent has not commented on yet, SOC authors it already
  knows, COORD items that reply to or mention it;
- DM recipients: COORD answers the users who DMed it (not yet answered this wake-up) first, SOC
  favours known contacts; otherwise a uniform known user;
- @mentions with probability 0.1 + 0.8·λ_COORD; tone: supportive more likely with λ_EMO and
  agreeableness, critical more likely with low agreeableness;
- coach tips (``obs.guidance``): each action slot follows the next unused tip with probability
  ``tip_compliance`` (default 0.7) when the tip's action type is allowed and feasible: its type,
  tone and topic, its target user as DM recipient or comment target (``"top-liked post"`` picks
  the most-liked item) and, with ``invite_mention``, an @mention of that user. Without tips no
  random draw is spent on them, so uncoached runs are unchanged by this rule;
- votes (the null model of the tie network: every cast vote is a tie signal, so how often it
  votes matters more than which way): per item the agent first decides whether to vote at all,
  with probability ``(1 - abstention) · drive · conviction · affinity``, capped at 1:
  ``drive`` from the persona (0.6 + 0.8·(E - 0.5) + 0.6·λ_EMO + 0.4·λ_SOC + 0.4·λ_PRE, in
  [0.2, 1.6]), ``conviction`` from the stance agreement ``a = 1 - |s_self - s_author| / 2``
  (0.4 for an indifferent a = 0.5 up to 1.6 for full agreement or disagreement; stances from
  ``stances``, unknown authors count as 0.5) and ``affinity`` = min(1, 0.1 + 0.4·c) where c
  counts the comments, DMs and mentions already exchanged with the author (a stranger's item
  is rarely voted on; votes themselves do not count, or they would feed on themselves until
  everyone votes on everyone, the near-complete tie networks this policy used to make).
  ``abstention`` (``[agents] policy_params = {abstention = ...}``, default 0.8) is the base rate of casting no vote.
  A cast vote is a like when ``a`` plus the relationship (+0.05 per interaction received,
  -0.05 per dislike received) plus Gaussian noise reaches ``lean_at`` (shifted by
  agreeableness), else a dislike. On ``examples/paper.toml`` (30 agents, 15 rounds) the
  final tie network then has density 0.70 / 0.60 / 0.48 at θ = 0.01 / 0.05 / 0.1 (0.998 /
  0.991 / 0.952 before; 0.26 / 0.16 / 0.12 with abstention 1, from comments and DMs alone).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import cast

from friendsim.agents.asking import derive_seed
from friendsim.agents.memory import AgentMemory, Relationship
from friendsim.agents.persona import Persona
from friendsim.agents.survey import Question, SurveyReply, baseline_answers
from friendsim.platform.events import normalise_topic
from friendsim.vocabulary import (
    Action,
    ActionType,
    Ballot,
    Decision,
    FeedItem,
    Observation,
    Tip,
    Tone,
)

_SUBTOPICS = (
    "policy",
    "science",
    "economy",
    "energy",
    "activism",
    "local impact",
    "technology",
    "health",
)
_OPENERS = {
    "supportive": ("Love this.", "Great point!", "So glad people talk about this.", "Agreed, and"),
    "neutral": ("Thinking about", "A note on", "Interesting:", "Question on"),
    "critical": ("I disagree.", "Not convinced.", "This misses something.", "Hmm, no:"),
}


STRANGER_AFFINITY = 0.1
"""Relative chance of voting on an item by an author the agent has not talked with."""
TIE_AFFINITY = 0.4
"""Added per conversation interaction with the author (affinity capped at 1)."""
DEFAULT_ABSTENTION = 0.8


def _conversation(rel: Relationship) -> int:
    """Comments, DMs and mentions exchanged with an author: votes (given or received) are left
    out, or votes would feed on themselves until everyone votes on everyone."""
    return rel.sent + rel.received + rel.mentions_in + rel.mentions_out


class BaselinePolicy:
    """Seeded random policy driven by the persona (see module docstring)."""

    def __init__(
        self,
        persona: Persona,
        *,
        seed: int,
        stances: Mapping[str, float] | None = None,
        topics: Sequence[str] | None = None,
        theme: str = "climate change",
        vote_noise: float = 0.25,
        lean_at: float = 0.55,
        abstention: float = DEFAULT_ABSTENTION,
        tip_compliance: float = 0.7,
    ) -> None:
        if not 0.0 <= abstention <= 1.0:
            raise ValueError(f"abstention={abstention!r} must be between 0 and 1")
        self.persona = persona
        self._seed = seed
        self.rng = random.Random(derive_seed(seed, persona.id, "baseline"))
        self.stances: Mapping[str, float] = stances if stances is not None else {}
        self.theme = normalise_topic(theme)
        self.topics = (
            tuple(normalise_topic(t) for t in topics)
            if topics
            else ((self.theme, *(f"{self.theme} {s}" for s in _SUBTOPICS)))
        )
        self.vote_noise = vote_noise
        self.lean_at = lean_at
        self.abstention = abstention
        self.tip_compliance = tip_compliance
        self.memory = AgentMemory(persona.id)
        self._derive()

    # --- surveys and persona changes ---------------------------------------------------------

    def _derive(self) -> None:
        """The choice weights that follow from the persona (see the module docstring)."""
        lam, big5 = self.persona.lambdas, self.persona.big5
        self._type_weights: dict[str, float] = {
            "POST": 0.15 + lam["PRE"] + 0.1 * lam["INF"],
            "COM": 0.15 + 0.6 * lam["SOC"] + 0.6 * lam["INF"] + 0.3 * lam["EMO"],
            "DM": 0.10 + 0.6 * lam["SOC"] + 0.8 * lam["COORD"] + 0.3 * lam["EMO"],
            "NOT": 0.02 + 0.12 * (1.0 - big5["E"]),
            "LIKE": 0.10 + 0.3 * lam["EMO"] + 0.2 * lam["SOC"],
            "DISLIKE": 0.03 * (1.0 - big5["A"]),
            "FOLLOW": 0.05 + 0.2 * lam["SOC"] + 0.1 * lam["INF"],
            "UNFOLLOW": 0.01,
            "REPOST": 0.03 + 0.2 * lam["PRE"],
        }
        self.p_mention = 0.1 + 0.8 * lam["COORD"]
        a = big5["A"]
        self.p_supportive = min(0.95, max(0.05, 0.3 + 0.5 * lam["EMO"] + 0.4 * (a - 0.5)))
        self.p_critical = min(0.6, max(0.02, 0.12 + 0.4 * (0.5 - a)))
        self._my_stance = self.persona.stance_score
        drive = (
            0.6 + 0.8 * (big5["E"] - 0.5) + 0.6 * lam["EMO"] + 0.4 * lam["SOC"] + 0.4 * lam["PRE"]
        )
        self._vote_drive = min(1.6, max(0.2, drive))

    def amend(self, persona: Persona) -> None:
        """Take a changed persona (an intervention): its weights follow from now on; memory
        and the random generator are kept."""
        if persona.id != self.persona.id:
            raise ValueError(f"persona {persona.id!r} is not agent {self.persona.id!r}")
        self.persona = persona
        self._derive()

    async def answer(
        self, *, survey: str, window: int, questions: Sequence[Question]
    ) -> SurveyReply:
        """The null model's answers (:func:`~friendsim.agents.survey.baseline_answers`)."""
        return SurveyReply(
            answers=baseline_answers(
                self.persona, questions, seed=self._seed, survey=survey, window=window
            )
        )

    # --- decide ------------------------------------------------------------------------------

    def _tone(self) -> Tone:
        r = self.rng.random()
        if r < self.p_supportive:
            return "supportive"
        if r < self.p_supportive + self.p_critical:
            return "critical"
        return "neutral"

    def _text(self, kind: str, topic: str, tone: Tone, mention: str | None) -> str:
        opener = self.rng.choice(_OPENERS[tone])
        body = f"{opener} {topic}: {self.persona.stance or 'still making up my mind'}"
        if kind == "DM":
            body = f"{opener} about {topic}, what do you think?"
        return f"@{mention} {body}" if mention else body

    async def decide(self, obs: Observation) -> Decision:
        """Choose ``obs.n_actions`` valid actions from ``obs.allowed`` (see module docstring)."""
        return Decision(actions=self.choose(obs))

    def choose(self, obs: Observation) -> tuple[Action, ...]:
        """The synchronous core of :meth:`decide` (used by benchmarks)."""
        mem = self.memory
        mem.observe(obs)
        me = self.persona.id
        rng = self.rng
        lam = self.persona.lambdas
        others_items = [i for i in obs.feed if i.author != me]
        users = [u for u in obs.known_users if u != me]
        followees = set(obs.followees)
        follow_cands = [u for u in users if u not in followees]
        feasible: dict[str, bool] = {
            "POST": True, "NOT": True, "COM": bool(obs.feed), "REPOST": bool(obs.feed),
            "LIKE": bool(others_items), "DISLIKE": bool(others_items), "DM": bool(users),
            "FOLLOW": bool(follow_cands), "UNFOLLOW": bool(followees - {me}),
        }  # fmt: skip
        types = [t for t in obs.allowed if feasible.get(t, False)]
        if not types:
            types = [t for t in obs.allowed if t in ("POST", "NOT")] or ["NOT"]
        weights = [self._type_weights.get(t, 0.05) for t in types]
        commented_topics = set(mem.opinions)
        dm_back = [s for s in mem.last_dm_senders if s != me and s in obs.known_users]
        tips = [t for t in obs.guidance if t.action in types]
        out: list[Action] = []
        for _ in range(obs.n_actions):
            tip = tips.pop(0) if tips and rng.random() < self.tip_compliance else None
            if tip is not None and weights[types.index(cast(ActionType, tip.action))] <= 0.0:
                tip = None
            atype: ActionType = (
                tip.action if tip is not None else rng.choices(types, weights=weights)[0]
            )
            tone = tip.tone if tip is not None else self._tone()
            tip_user = tip.target if tip is not None and tip.target in users else None
            target: int | None = None
            recipient: str | None = None
            topic = ""
            match atype:
                case "POST":
                    topic = (
                        normalise_topic(tip.topic)
                        if tip is not None and tip.topic
                        else self.theme
                        if rng.random() < 0.3 + 0.4 * lam["PRE"]
                        else rng.choice(self.topics)
                    )
                case "COM" | "REPOST":
                    item = self._tip_item(obs.feed, tip, tip_user) or self._pick_item(
                        obs.feed, commented_topics
                    )
                    target, topic = item.post_id, item.topic or self.theme
                    commented_topics.add(topic)
                case "LIKE" | "DISLIKE":
                    item = self._pick_item(others_items, commented_topics)
                    target, topic = item.post_id, item.topic
                case "DM" if tip_user is not None:
                    recipient = tip_user
                    topic = normalise_topic(tip.topic) if tip and tip.topic else self.theme
                case "DM":
                    if dm_back and rng.random() < 0.3 + 0.7 * lam["COORD"]:
                        recipient = dm_back.pop(0)
                    else:
                        recipient = self._pick_user(users)
                    topic = rng.choice(self.topics)
                case "FOLLOW":
                    recipient = self._pick_user(follow_cands)
                    follow_cands.remove(recipient)
                    if not follow_cands:
                        weights[types.index("FOLLOW")] = 0.0
                case "UNFOLLOW":
                    recipient = rng.choice(sorted(followees - {me}))
                    followees.discard(recipient)
                    if not followees - {me}:
                        weights[types.index("UNFOLLOW")] = 0.0
                case _:
                    pass
            mention: str | None = None
            if (
                tip is not None
                and tip.invite_mention
                and atype in ("POST", "COM", "DM", "REPOST")
                and tip_user not in (None, recipient)
            ):
                mention = tip_user
            elif (
                atype in ("POST", "COM", "DM", "REPOST") and users and rng.random() < self.p_mention
            ):
                author = (
                    next((i.author for i in obs.feed if i.post_id == target), None)
                    if target is not None
                    else None
                )
                if author is not None and author != me:
                    mention = author
                else:
                    mention = self._pick_user(users)
                if mention == recipient:
                    mention = None
            text = (
                self._text(atype, topic, tone, mention)
                if atype in ("POST", "COM", "DM", "REPOST")
                else ""
            )
            if atype == "NOT":
                tone = "neutral"
            out.append(Action(type=atype, topic=topic, tone=tone, target_post=target,
                              recipient=recipient, mention=mention, text=text))  # fmt: skip
            if sum(weights) <= 0.0:
                types, weights = ["NOT"], [1.0]
        return tuple(out)

    def _pick_item(self, items: Sequence[FeedItem], commented: set[str]) -> FeedItem:
        lam = self.persona.lambdas
        me = self.persona.id
        rels = self.memory.relations
        is_own = self.memory.is_own_post
        w = [
            1.0
            + 3.0 * lam["INF"] * (i.topic not in commented)
            + 2.0 * lam["SOC"] * (i.author in rels)
            + 3.0
            * lam["COORD"]
            * (me in i.mentions or (i.parent_id is not None and is_own(i.parent_id)))
            + 1.0 * lam["PRE"] * min(i.likes, 5) / 5.0
            for i in items
        ]
        return self.rng.choices(items, weights=w)[0]

    @staticmethod
    def _tip_item(items: Sequence[FeedItem], tip: Tip | None, user: str | None) -> FeedItem | None:
        """The feed item a tip points at: the top-liked item, or the tip user's latest item."""
        if tip is None or not items:
            return None
        if tip.target == "top-liked post":
            return max(items, key=lambda i: (i.likes - i.dislikes, -i.post_id))
        by_user = [i for i in items if i.author == user]
        return by_user[-1] if by_user else None

    def _pick_user(self, users: Sequence[str]) -> str:
        soc = self.persona.lambdas["SOC"]
        rels = self.memory.relations
        if rels and self.rng.random() < soc:
            known = [u for u in users if u in rels]
            if known:
                return self.rng.choice(known)
        return self.rng.choice(users)

    # --- vote --------------------------------------------------------------------------------

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        """+1/-1/0 per item not authored by this agent, by stance agreement plus noise."""
        return Ballot(votes=self.choose_votes(obs, items))

    def vote_probability(self, author: str, agree: float) -> float:
        """The chance of casting any vote (like or dislike) on an item by ``author``, given the
        stance agreement ``agree`` in [0, 1] (see module docstring)."""
        rel = self.memory.relations.get(author)
        ties = 0 if rel is None else _conversation(rel)
        conviction = 0.4 + 1.2 * abs(agree - 0.5) * 2.0  # 0.4 (indifferent) .. 1.6 (strong)
        affinity = min(1.0, STRANGER_AFFINITY + TIE_AFFINITY * ties)
        p = (1.0 - self.abstention) * self._vote_drive * conviction * affinity
        return min(1.0, max(0.0, p))

    def choose_votes(self, obs: Observation, items: Sequence[FeedItem]) -> dict[int, int]:
        """The synchronous core of :meth:`vote`: per item, whether to vote at all
        (:meth:`vote_probability`), then which way (agreement, relationship, noise)."""
        me = self.persona.id
        shift = 0.2 * (self.persona.big5["A"] - 0.5)
        rnd, gauss = self.rng.random, self.rng.gauss
        votes: dict[int, int] = {}
        for item in items:
            if item.author == me:
                continue
            s = self.stances.get(item.author)
            agree = 0.5 if s is None else 1.0 - abs(self._my_stance - s) / 2.0
            engage = rnd() < self.vote_probability(item.author, agree)
            rel = self.memory.relations.get(item.author)
            lean = agree
            if rel is not None:
                lean += 0.05 * min(rel.likes_received + rel.received, 4) - 0.05 * min(
                    rel.dislikes_received, 4
                )
            x = lean + gauss(0.0, self.vote_noise)
            if not engage:
                votes[item.post_id] = 0
            else:
                votes[item.post_id] = 1 if x >= self.lean_at - shift else -1
        self.memory.record_votes(votes, items)
        return votes

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        """Remember the applied actions (feeds the next choices)."""
        self.memory.record_actions(window, applied)


def make_baseline_policy(
    persona: Persona,
    *,
    seed: int,
    stances: Mapping[str, float] | None = None,
    topics: Sequence[str] | None = None,
    theme: str = "climate change",
    abstention: float = DEFAULT_ABSTENTION,
) -> BaselinePolicy:
    """The baseline policy for one agent; pass ``stances`` (agent id -> stance_score) of all
    agents so votes follow stance agreement.

    The mapping is shared, not copied: pass the same read-only mapping to every agent so the
    population's memory stays linear in its size (a copy per agent is quadratic)."""
    return BaselinePolicy(
        persona, seed=seed, stances=stances, topics=topics, theme=theme, abstention=abstention
    )
