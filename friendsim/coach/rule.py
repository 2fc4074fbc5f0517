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


def _soc(ctx: CoachContext) -> list[Tip]:
    topic = _topic(ctx)
    tips: list[Tip] = []
    p = _partner(ctx)
    if p is not None:
        tips.append(
            Tip(
                action="DM",
                target=p,
                topic=topic,
                invite_mention=False,
                tone="supportive",
                text=f"Send a DM to {p} about {topic} to keep your conversation going.",
            )
        )
    if ctx.top_liked_post_id is not None:
        t = _topic(ctx, ctx.top_liked_topic)
        tips.append(
            Tip(
                action="COM",
                target=TOP_LIKED,
                topic=t,
                invite_mention=False,
                tone="neutral",
                text=f"Comment on the top-liked post about {t} to join the busiest conversation.",
            )
        )
    return tips


def _inf(ctx: CoachContext) -> list[Tip]:
    tips: list[Tip] = []
    for topic, _pid, author in [u for u in ctx.unseen_topics if usable_topic(u[0])][:2]:
        tips.append(
            Tip(
                action="COM",
                target=author,
                topic=topic,
                invite_mention=False,
                tone="neutral",
                text=f"Comment on {author}'s post about {topic}, a topic you have not explored yet.",
            )
        )
    if not tips:
        fresh = [t for t in ctx.trending_topics if t not in ctx.last_topics and usable_topic(t)]
        t = _topic(ctx, *fresh)
        target = TOP_LIKED if ctx.top_liked_post_id is not None else None
        if target is None:
            tips.append(_post(t, f"Post about {t} to broaden the topics you engage with."))
        else:
            tips.append(
                Tip(
                    action="COM",
                    target=target,
                    topic=t,
                    invite_mention=False,
                    tone="neutral",
                    text=f"Comment on the top-liked post about {t} to widen your topics.",
                )
            )
    return tips


def _pre(ctx: CoachContext) -> list[Tip]:
    t = _topic(ctx, *ctx.trending_topics)
    tips = [_post(t, f"Write a new post about {t}, the topic people discuss most right now.")]
    other = _topic(ctx, *ctx.last_topics)
    if other != t:
        tips.append(
            _post(other, f"Write a clear, likeable post about {other} to build your profile.")
        )
    return tips


def _coord(ctx: CoachContext) -> list[Tip]:
    tips: list[Tip] = []
    for sender in ctx.unanswered_dm_senders[:2]:
        t = _topic(ctx)
        tips.append(
            Tip(
                action="DM",
                target=sender,
                topic=t,
                invite_mention=False,
                tone="supportive",
                text=f"Reply by DM to {sender}, who messaged you last round, about {t}.",
            )
        )
    p = _someone(ctx)
    if p is not None:
        t = _topic(ctx)
        tips.append(
            _post(
                t,
                f"Mention @{p} in a post about {t} and invite them to mention you back.",
                mention=p,
            )
        )
    return tips


def _emo(ctx: CoachContext) -> list[Tip]:
    p = _someone(ctx)
    t = _topic(ctx)
    if p is None:
        return [_post(t, f"Write a warm, encouraging post about {t} to invite friendly replies.")]
    return [
        Tip(
            action="DM",
            target=p,
            topic=t,
            invite_mention=False,
            tone="supportive",
            text=f"Send a supportive DM to {p} about {t} to encourage warm replies.",
        )
    ]


_RULES = {"SOC": _soc, "INF": _inf, "PRE": _pre, "COORD": _coord, "EMO": _emo}


def rule_tips(ctx: CoachContext) -> tuple[Tip, ...]:
    """The deterministic tips for ``ctx`` (3 to 5, ordered by gap)."""
    candidates = [(g, _RULES[g.component](ctx)) for g in ctx.gaps]
    picked: list[Tip] = []
    keys: set[tuple[str, str | None, str]] = set()

    def add(tip: Tip) -> None:
        key = (tip.action, tip.target, tip.topic)
        if key not in keys and len(picked) < MAX_TIPS:
            keys.add(key)
            picked.append(tip)

    for g, tips in candidates:
        if g.gap > 0 and tips:
            add(tips[0])
    for g, tips in candidates:
        if len(picked) >= MIN_TIPS:
            break
        for tip in tips[1:] if g.gap > 0 else tips:
            if len(picked) >= MIN_TIPS:
                break
            add(tip)
    t = _topic(ctx)
    generic = (
        f"Post your view on {t} and ask the others for theirs.",
        f"Share a personal experience about {t} in a new post.",
        f"Post a short question about {t} that invites replies.",
    )
    for text in generic:  # tiny contexts (nobody else known): generic, distinct post tips
        if len(picked) >= MIN_TIPS:
            break
        if all(p.text != text for p in picked):
            picked.append(_post(t, text))
    return tuple(picked)


class RuleCoach:
    """The deterministic coach (no LLM)."""

    name = "rule"

    async def advise(self, ctx: CoachContext) -> tuple[Tip, ...]:
        return rule_tips(ctx)
