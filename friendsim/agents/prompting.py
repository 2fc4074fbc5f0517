"""Prompt building: templates from ``prompts/*.txt`` plus data blocks for untrusted text.

Any text written by agents (posts, comments, DMs, the topic labels they chose), by a coach, or
derived from them (memory snippets) enters a prompt only inside a block such as
``<post id="3" author="a01">...</post>`` or ``<topics>...</topics>``
with the content HTML-escaped (``&``, ``<``, ``>``, quotes), so no content can close its block or
open a new one; the system prompt tells the model that text inside blocks is content, never
instructions. Attribute values are escaped the same way.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from importlib import resources
from string import Template

from friendsim.agents.memory import snippet
from friendsim.agents.persona import COMPONENTS, Persona, personality_sentence
from friendsim.llm.base import LLMRequest
from friendsim.llm.tokens import estimate_input_tokens
from friendsim.platform.topics import usable_topic
from friendsim.vocabulary import FeedItem, InboxMessage, Observation, Tip

MAX_ITEM_CHARS = 400
"""Each post/DM shown in a prompt is cut to this many characters (bounds prompt size)."""

_DOMINANT_TEXT = {
    "SOC": "you want to talk with people: comments and direct messages, sent and received.",
    "INF": "you want to learn: see new and varied topics.",
    "PRE": "you want to be seen: post publicly and earn likes.",
    "COORD": "you want to coordinate: get @mentioned and answer people who messaged you.",
    "EMO": "you want warm, positive exchanges: kind comments and messages to you.",
}


@cache
def template(name: str) -> Template:
    """The prompt template ``prompts/<name>.txt`` (cached after the first read)."""
    text = resources.files("friendsim.agents.prompts").joinpath(f"{name}.txt").read_text("utf-8")
    return Template(text)


def render(template_name: str, /, **values: object) -> str:
    """Fill template ``template_name``; every placeholder must be given (KeyError otherwise)."""
    return template(template_name).substitute({k: str(v) for k, v in values.items()}).strip()


def esc(text: str) -> str:
    """Escape text for inclusion inside a data block (``&``, ``<``, ``>``)."""
    return html.escape(text, quote=False)


def esc_attr(text: str) -> str:
    """Escape text for an attribute value (also quotes)."""
    return html.escape(text, quote=True)


def post_block(
    item: FeedItem, *, extra: Mapping[str, str] | None = None, limit: int = MAX_ITEM_CHARS
) -> str:
    """One public item as a delimited data block."""
    head, body = _item_parts(item, limit)
    if extra:
        head += "".join([_attr(k, v) for k, v in extra.items()])
    return f"<post {head}>{body}</post>"


def post_block_with(item: FeedItem, key: str, value: str, *, limit: int = MAX_ITEM_CHARS) -> str:
    """``post_block(item, extra={key: value}, limit=limit)`` (the same text) without a mapping
    per item: a vote prompt renders every item of the round for every agent."""
    head, body = _item_parts(item, limit)
    return f"<post {head}{_attr(key, value)}>{body}</post>"


@lru_cache(maxsize=16384)
def _attr(key: str, value: str) -> str:
    """`` key="value"`` escaped; cached: a vote prompt repeats the same few relationship lines
    (most often "no previous interaction") on every item."""
    return f' {key}="{esc_attr(value)}"'


@lru_cache(maxsize=65536)
def _item_parts(item: FeedItem, limit: int) -> tuple[str, str]:
    """The escaped attributes and body of an item: the same for every viewer, so cached (every
    agent of a round renders the same items for its plan and its votes)."""
    attrs = {"id": str(item.post_id), "author": item.author, "topic": item.topic}
    if item.parent_id is not None:
        attrs["reply_to"] = str(item.parent_id)
    if item.mentions:
        attrs["mentions"] = " ".join(item.mentions)
    attrs["likes"] = str(item.likes)
    attrs["dislikes"] = str(item.dislikes)
    if item.label:
        attrs["fact_check"] = item.label
    head = " ".join(f'{k}="{esc_attr(v)}"' for k, v in attrs.items())
    return head, esc(snippet(item.text, limit))


def dm_block(msg: InboxMessage, *, limit: int = MAX_ITEM_CHARS) -> str:
    """One direct message as a delimited data block."""
    return (
        f'<dm id="{msg.dm_id}" from="{esc_attr(msg.sender)}" topic="{esc_attr(msg.topic)}">'
        f"{esc(snippet(msg.text, limit))}</dm>"
    )


def tip_block(tip: Tip) -> str:
    """One coach tip as a delimited data block."""
    return (
        f'<tip action="{esc_attr(tip.action)}" target="{esc_attr(tip.target or "")}" topic="{esc_attr(tip.topic)}"'
        f' invite_mention="{str(tip.invite_mention).lower()}" tone="{esc_attr(tip.tone)}">'
        f"{esc(snippet(tip.text, 300))}</tip>"
    )


def system_prompt(persona: Persona, theme: str, *, compact: bool = False) -> str:
    """The stable system prompt (persona, motives, rules); identical every call, so cacheable.

    ``compact``: the short form for small-context local models (no facets, no reward weights,
    one line per motive)."""
    lambdas = ", ".join(f"{c} {persona.lambdas[c]:.2f}" for c in COMPONENTS)
    if compact:
        return render(
            "system_compact",
            name=persona.name,
            agent_id=persona.id,
            theme=theme,
            role=persona.role,
            stance=persona.stance or "(undecided)",
            style=persona.style or "(plain)",
            dominant_text=_DOMINANT_TEXT[persona.dominant_policy],
        )
    return render(
        "system",
        name=persona.name,
        agent_id=persona.id,
        theme=theme,
        role=persona.role,
        description=persona.description or "(none)",
        stance=persona.stance or "(undecided)",
        style=persona.style or "(plain)",
        personality=personality_sentence(persona),
        facets=", ".join(f"{k} {v:.2f}" for k, v in persona.facets.items()) or "(not given)",
        lambdas=lambdas,
        dominant=persona.dominant_policy,
        dominant_text=_DOMINANT_TEXT[persona.dominant_policy],
    )


@cache
def _action_help() -> dict[str, str]:
    lines = resources.files("friendsim.agents.prompts").joinpath("actions.txt").read_text("utf-8")
    out: dict[str, str] = {}
    for line in lines.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


def _cap_list(values: Sequence[str], cap: int) -> str:
    if not values:
        return "(none)"
    shown = ", ".join(values[:cap])
    return shown + (f" (+{len(values) - cap} more)" if len(values) > cap else "")


def topics_block(topics: Sequence[str], cap: int) -> str:
    """The known topics as one escaped data block: a topic is a label some agent (a model)
    wrote, so it is content, never instructions."""
    return f"<topics>{esc(_cap_list(topics, cap))}</topics>"


def shown_feed(obs: Observation, max_items: int) -> tuple[FeedItem, ...]:
    """The feed items a plan prompt shows (the first ``max_items`` in feed order)."""
    return obs.feed[:max_items]


def tips_first_order(obs: Observation) -> tuple[str, ...]:
    """The allowed action types with those the coach's tips suggest first, in tip order, then
    the rest in their usual order.

    A small model tends to write the first action type it was offered; listing the coach's
    suggestions first (in the prompt and in the plan schema) makes following the coach its
    default instead of a POST every time. The set of allowed types is unchanged."""
    allowed = tuple(obs.allowed)
    suggested = [tip.action for tip in obs.guidance if tip.action in allowed]
    return tuple(dict.fromkeys([*suggested, *allowed]))


def plan_prompt(
    obs: Observation,
    memory_text: str,
    *,
    max_feed_items: int = 100,
    max_inbox: int = 10,
    max_list: int = 40,
    item_chars: int = MAX_ITEM_CHARS,
    compact: bool = False,
    action_order: Sequence[str] | None = None,
) -> str:
    """The user message of a plan request (``compact``: the short instructions of the compact
    prompt profile, at most 5 inbox messages and 12 listed users/topics). ``action_order``:
    the allowed types in the order to list them (default: ``obs.allowed``'s)."""
    order = tuple(obs.allowed) if action_order is None else tuple(action_order)
    if sorted(order) != sorted(obs.allowed):
        raise ValueError(f"action_order {order} is not a permutation of {tuple(obs.allowed)}")
    if compact:
        max_inbox, max_list = min(max_inbox, 5), min(max_list, 12)
    feed = shown_feed(obs, max_feed_items)
    omitted = len(obs.feed) - len(feed)
    feed_text = "\n".join(post_block(i, limit=item_chars) for i in feed) or "(none)"
    inbox = obs.inbox[-max_inbox:]
    inbox_text = "\n".join(dm_block(m, limit=item_chars) for m in inbox) or "(none)"
    rewards = ""
    if obs.last_rewards is not None:
        lr = obs.last_rewards
        comps = ", ".join(f"{k} {v:.2f}" for k, v in lr.components.items())
        rewards += f"Your reward in window {lr.window}: total {lr.total:.3f} ({comps}).\n"
    if obs.best_rewards is not None:
        br = obs.best_rewards
        rewards += f"Your best window so far: {br.window} with total {br.total:.3f}.\n"
    guidance = ""
    if obs.guidance:
        guidance = (
            "Your coach's tips for this window (follow them where you can):\n"
            + "\n".join(tip_block(t) for t in obs.guidance[:5])
            + "\n"
        )
    help_lines = _action_help()
    action_help = "\n".join(f"- {t}: {help_lines.get(t, '')}" for t in order)
    return render(
        "plan_compact" if compact else "plan",
        window=obs.window,
        n_actions=obs.n_actions,
        feed_note=f" (showing {len(feed)}, {omitted} more omitted)" if omitted > 0 else "",
        feed=feed_text,
        inbox=inbox_text,
        memory=esc(memory_text),
        rewards=rewards,
        guidance=guidance,
        known_users=_cap_list([u for u in obs.known_users if u != obs.agent_id], max_list),
        topics=topics_block([t for t in obs.topics if usable_topic(t)][-max_list:], max_list),
        followees=_cap_list(list(obs.followees), max_list),
        action_help=action_help,
        allowed=", ".join(order),
    )


def request_tokens(req: LLMRequest) -> int:
    """Estimated prompt tokens of a request (system + all messages), as the LLM layer counts."""
    return estimate_input_tokens(req)
