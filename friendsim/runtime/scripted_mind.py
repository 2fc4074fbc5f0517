"""A deterministic, instant "model" that answers the agents' requests validly, for tests and
benchmarks (use it as the responder of a :class:`~friendsim.llm.scripted.ScriptedLLM`).

It reads what the real prompts contain — the plan schema's allowed types and action count, the
``<post id=... author=...>`` blocks, the "Known users:" line, the vote schema's post ids — and
answers with choices drawn from a ``random.Random`` seeded by the request's cache key, so the same
request always gets the same answer (whatever order concurrent requests arrive in). This
exercises the whole LLM policy (prompt building, schema validation, memory) without a model.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from friendsim.coach.llm import read_context
from friendsim.llm.base import LLMRequest

_POST = re.compile(r'<post id="(\d+)" author="([^"]*)"')
_KNOWN = re.compile(r"^Known users: (.*)$", re.MULTILINE)
_TOPICS = ("renewables", "carbon tax", "heat waves", "flooding", "electric cars", "diet")
_TONES = ("supportive", "neutral", "critical")


def _rng(request: LLMRequest, seed: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{request.cache_key('mind')}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _prompt(request: LLMRequest) -> str:
    """The request's first message: the plan or vote prompt (a re-ask adds turns after it)."""
    return request.messages[0].content if request.messages else ""


def _allowed_types(items: Mapping[str, Any]) -> list[str]:
    """The action types a plan schema offers (one ``anyOf`` variant per type, or one item)."""
    variants = items.get("anyOf") or [items]
    out: list[str] = []
    for variant in variants:
        out += variant.get("properties", {}).get("type", {}).get("enum", [])
    return out or ["POST"]


_ME = re.compile(r'user id "([^"]+)"')


def _me(request: LLMRequest) -> str:
    m = _ME.search(request.system)
    return m.group(1) if m else ""


def _plan(request: LLMRequest, rng: random.Random) -> dict[str, Any]:
    schema: Mapping[str, Any] = request.json_schema or {}
    arr = schema.get("properties", {}).get("actions", {})
    n = int(arr.get("minItems", 1))
    allowed = _allowed_types(arr.get("items", {}))
    text = _prompt(request)
    posts = [(int(pid), author) for pid, author in _POST.findall(text)]
    known_line = _KNOWN.search(text)
    known = []
    if known_line and known_line.group(1).strip() != "(none)":
        known = [u.strip() for u in re.sub(r"\(\+\d+ more\)", "", known_line.group(1)).split(",")]
        known = [u for u in known if u]
    me = _me(request)
    feasible = [
        t
        for t in allowed
        if t in ("POST", "NOT")
        or (t in ("COM", "REPOST") and posts)
        or (t == "DM" and known)
        or (t in ("LIKE", "DISLIKE") and any(a != me for _, a in posts))
    ] or ["POST"]
    actions = []
    for _ in range(n):
        kind = rng.choice(feasible)
        target = recipient = None
        if kind in ("COM", "REPOST"):
            target = rng.choice(posts)[0]
        elif kind in ("LIKE", "DISLIKE"):
            target = rng.choice([p for p, a in posts if a != me])
        elif kind == "DM":
            recipient = rng.choice(known)
        mention_user = rng.choice(known) if known and kind != "NOT" and rng.random() < 0.3 else None
        if mention_user == recipient:
            mention_user = None
        actions.append(
            {
                "type": kind,
                "target_post": target,
                "recipient": recipient,
                "topic": rng.choice(_TOPICS),
                "mention": mention_user is not None,
                "mention_user": mention_user,
                "tone": rng.choice(_TONES),
            }
        )
    return {"actions": actions}


def _votes(request: LLMRequest, rng: random.Random) -> dict[str, Any]:
    schema: Mapping[str, Any] = request.json_schema or {}
    entry = schema.get("properties", {}).get("votes", {}).get("items", {})
    ids = entry.get("properties", {}).get("post_id", {}).get("enum", [])
    return {"votes": [{"post_id": i, "vote": rng.choice((-1, 0, 1, 1))} for i in ids]}


def _tips(request: LLMRequest, rng: random.Random) -> dict[str, Any]:
    """Three tips the LLM coach accepts: a post, a comment on the top-liked post when there is
    one, a DM to a user the agent knows (read from the coach's context)."""
    try:
        context = read_context(request.messages[0].content) if request.messages else {}
    except (ValueError, RecursionError):
        context = {}
    context = context if isinstance(context, dict) else {}
    me = context.get("user")
    known = [u for u in context.get("known_users") or () if isinstance(u, str) and u != me]
    options: list[tuple[str, str | None]] = [("POST", None)]
    if context.get("top_liked_post") is not None:
        options.append(("COM", "top-liked post"))
    options += [("DM", u) for u in known[:3]]
    tips = []
    for _ in range(3):
        action, target = rng.choice(options)
        tips.append(
            {
                "action": action,
                "target": target,
                "topic": rng.choice(_TOPICS),
                "invite_mention": rng.random() < 0.5,
                "tone": rng.choice(_TONES),
                "text": "Keep the conversation going with a friendly note.",
            }
        )
    return {"tips": tips}


def _survey(request: LLMRequest, rng: random.Random) -> dict[str, Any]:
    schema: Mapping[str, Any] = request.json_schema or {}
    props = schema.get("properties", {}).get("answers", {}).get("properties", {})
    return {
        "answers": {
            q: rng.randint(int(s.get("minimum", 1)), int(s.get("maximum", 7)))
            for q, s in props.items()
        }
    }


def _moderation(request: LLMRequest, rng: random.Random) -> dict[str, Any]:
    action = rng.choice(("none", "none", "none", "label", "downrank"))
    return {"action": action, "label": "Context added by reviewers.", "reason": "scripted"}


def plausible_responder(seed: int = 0) -> Callable[[LLMRequest], str | dict[str, Any]]:
    """A responder answering ``plan``, ``content``, ``vote``, ``coach``, ``survey`` and
    ``moderation`` requests validly."""

    def respond(request: LLMRequest) -> str | dict[str, Any]:
        rng = _rng(request, seed)
        match request.label:
            case "plan":
                return _plan(request, rng)
            case "vote":
                return _votes(request, rng)
            case "coach":
                return _tips(request, rng)
            case "survey":
                return _survey(request, rng)
            case "moderation":
                return _moderation(request, rng)
            case _:
                topic = rng.choice(_TOPICS)
                return f"Thinking about {topic} today; {rng.choice(_TONES)} take, happy to chat."

    return respond
