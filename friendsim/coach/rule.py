"""RuleCoach: deterministic tips from the reward gaps, no LLM.

For each component with a positive gap, in gap order, one *primary* tip:

* SOC   -> DM a recent partner (or, with none, comment on the top-liked post);
* INF   -> comment on a post about a topic the agent has never been shown;
* PRE   -> POST on the trending topic;
* COORD -> DM back last window's unanswered DM senders, else @mention a partner in a post and
  invite a mention back;
* EMO   -> a supportive DM to a known user.

Tips are deduplicated; when fewer than 3 remain, *secondary* tips (other variants, in gap order)
fill up to 3; at most 5 are returned. A topic that is a tone word or a placeholder (an invalid
topic some model wrote) is never suggested back. Every tip names an action, a target (user id, "top-liked
post" or ``None`` for a POST), a topic, ``invite_mention`` and a tone, in one sentence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from friendsim.coach.base import TOP_LIKED, CoachContext
from friendsim.platform.topics import usable_topic
from friendsim.vocabulary import Tip

MIN_TIPS = 3
MAX_TIPS = 5
FALLBACK_TOPIC = "the discussion"


def _topic(ctx: CoachContext, *prefer: str | None) -> str:
    """The first usable topic (never a tone word or placeholder, see
    :func:`friendsim.platform.topics.usable_topic`): preferred, recent, trending, the theme."""
    for t in (*prefer, *ctx.last_topics, *ctx.trending_topics, ctx.theme):
        if t and usable_topic(t):
            return t
    return FALLBACK_TOPIC


def _preferred(base: str, *prefer: str | None) -> str:
    """``_topic(ctx, *prefer)`` given ``base = _topic(ctx)``: a usable preferred topic, else
    the agent's own first usable one."""
    for t in prefer:
        if t and usable_topic(t):
            return t
    return base


def _partner(ctx: CoachContext) -> str | None:
    for v in (*ctx.recent_partners, *ctx.known_users):
        if v != ctx.agent:
            return v
    return None


def _someone(ctx: CoachContext) -> str | None:
    p = _partner(ctx)
    if p is not None:
        return p
    if ctx.top_liked_author and ctx.top_liked_author != ctx.agent:
        return ctx.top_liked_author
    return next((a for a in ctx.agents if a != ctx.agent), None)


def _post(topic: str, text: str, *, mention: str | None = None) -> Tip:
    return Tip(
        action="POST",
        target=mention,
        topic=topic,
        invite_mention=mention is not None,
        tone="supportive" if mention else "neutral",
        text=text,
    )


def _dm(target: str, topic: str, text: str) -> Tip:
    return Tip(
        action="DM", target=target, topic=topic, invite_mention=False, tone="supportive", text=text
    )


def _comment(target: str, topic: str, text: str) -> Tip:
    return Tip(
        action="COM", target=target, topic=topic, invite_mention=False, tone="neutral", text=text
    )


Tips = Iterator[Tip]
"""A rule's tips, best first, made as they are asked for: most agents' first tips fill the
advice, and their other variants are never needed."""


def _soc(ctx: CoachContext, topic: str) -> Tips:
    p = _partner(ctx)
    if p is not None:
        yield _dm(p, topic, f"Send a DM to {p} about {topic} to keep your conversation going.")
    if ctx.top_liked_post_id is not None:
        t = _preferred(topic, ctx.top_liked_topic)
        yield _comment(
            TOP_LIKED,
            t,
            f"Comment on the top-liked post about {t} to join the busiest conversation.",
        )


def _inf(ctx: CoachContext, topic: str) -> Tips:
    unseen = [u for u in ctx.unseen_topics if usable_topic(u[0])][:2]
    for t, _pid, author in unseen:
        yield _comment(
            author, t, f"Comment on {author}'s post about {t}, a topic you have not explored yet."
        )
    if not unseen:
        fresh = [t for t in ctx.trending_topics if t not in ctx.last_topics and usable_topic(t)]
        t = _preferred(topic, *fresh)
        if ctx.top_liked_post_id is None:
            yield _post(t, f"Post about {t} to broaden the topics you engage with.")
        else:
            yield _comment(
                TOP_LIKED, t, f"Comment on the top-liked post about {t} to widen your topics."
            )


def _pre(ctx: CoachContext, topic: str) -> Tips:
    t = _preferred(topic, *ctx.trending_topics)
    yield _post(t, f"Write a new post about {t}, the topic people discuss most right now.")
    other = _preferred(topic, *ctx.last_topics)
    if other != t:
        yield _post(other, f"Write a clear, likeable post about {other} to build your profile.")


def _coord(ctx: CoachContext, topic: str) -> Tips:
    for sender in ctx.unanswered_dm_senders[:2]:
        yield _dm(
            sender, topic, f"Reply by DM to {sender}, who messaged you last round, about {topic}."
        )
    p = _someone(ctx)
    if p is not None:
        yield _post(
            topic,
            f"Mention @{p} in a post about {topic} and invite them to mention you back.",
            mention=p,
        )


def _emo(ctx: CoachContext, topic: str) -> Tips:
    p = _someone(ctx)
    if p is None:
        yield _post(
            topic, f"Write a warm, encouraging post about {topic} to invite friendly replies."
        )
        return
    yield _dm(p, topic, f"Send a supportive DM to {p} about {topic} to encourage warm replies.")


_RULES: dict[str, Callable[[CoachContext, str], Tips]] = {
    "SOC": _soc,
    "INF": _inf,
    "PRE": _pre,
    "COORD": _coord,
    "EMO": _emo,
}


def rule_tips(ctx: CoachContext) -> tuple[Tip, ...]:
    """The deterministic tips for ``ctx`` (3 to 5, ordered by gap).

    Each rule's tips are made only as far as they are taken (the rules are generators, pure
    functions of ``ctx``): the same tips, in the same order, as making every rule's whole list
    first (the coach advises every agent at every window's end)."""
    topic = _topic(ctx)
    candidates = [(g, _RULES[g.component](ctx, topic)) for g in ctx.gaps]
    picked: list[Tip] = []
    keys: set[tuple[str, str | None, str]] = set()

    def add(tip: Tip) -> None:
        key = (tip.action, tip.target, tip.topic)
        if key not in keys and len(picked) < MAX_TIPS:
            keys.add(key)
            picked.append(tip)

    for g, tips in candidates:
        if g.gap > 0:
            first = next(tips, None)
            if first is not None:
                add(first)
    for _g, tips in candidates:
        if len(picked) >= MIN_TIPS:
            break
        for tip in tips:  # a positive gap's first tip was taken above
            if len(picked) >= MIN_TIPS:
                break
            add(tip)
    generic = (
        f"Post your view on {topic} and ask the others for theirs.",
        f"Share a personal experience about {topic} in a new post.",
        f"Post a short question about {topic} that invites replies.",
    )
    for text in generic:  # tiny contexts (nobody else known): generic, distinct post tips
        if len(picked) >= MIN_TIPS:
            break
        if all(p.text != text for p in picked):
            picked.append(_post(topic, text))
    return tuple(picked)


class RuleCoach:
    """The deterministic coach (no LLM)."""

    name = "rule"

    async def advise(self, ctx: CoachContext) -> tuple[Tip, ...]:
        return rule_tips(ctx)
