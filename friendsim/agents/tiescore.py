"""Text-based tie evidence: an agent's LLM scores each peer 0-5 from the last window's transcript.

This is the paper's alternative evidence signal: ``score / 5`` replaces the evidence ``e`` in the
tie update. Conservative by construction: peers the model leaves out get 0, and when the answer
stays invalid after the re-asks every peer gets 0 and the :class:`Failure` is returned for the
caller to record. The transcript is delimited as data (agents' text is content, never
instructions) and bounded (``max_lines`` items of ``max_chars`` characters).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from friendsim.agents.asking import ask_validated, derive_seed
from friendsim.agents.memory import snippet
from friendsim.agents.persona import Persona
from friendsim.agents.policy import Failure
from friendsim.agents.prompting import esc, esc_attr, render, system_prompt
from friendsim.agents.schema import decode_json, parse_ties, tie_json_schema
from friendsim.llm.base import LLM, Completion


@dataclass(frozen=True, kw_only=True, slots=True)
class TranscriptLine:
    """One item of a window transcript: a public post/comment (``recipient`` None) or a DM."""

    kind: str
    item_id: int
    author: str
    text: str
    topic: str = ""
    recipient: str | None = None
    reply_to: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TieScores:
    """Scores in [0, 1] (``raw / 5``) per peer, the raw 0-5 answers, and a failure if any."""

    agent_id: str
    window: int
    scores: Mapping[str, float]
    raw: Mapping[str, int]
    failure: Failure | None = None
    prompt_tokens: int = 0


def render_transcript(
    lines: Sequence[TranscriptLine], *, max_lines: int = 200, max_chars: int = 240
) -> str:
    """The transcript as delimited ``<item>`` blocks (the most recent ``max_lines``)."""
    out = []
    for ln in lines[-max_lines:]:
        attrs = f'kind="{esc_attr(ln.kind)}" id="{ln.item_id}" author="{esc_attr(ln.author)}"'
        if ln.recipient is not None:
            attrs += f' to="{esc_attr(ln.recipient)}"'
        if ln.reply_to is not None:
            attrs += f' reply_to="{ln.reply_to}"'
        if ln.topic:
            attrs += f' topic="{esc_attr(ln.topic)}"'
        out.append(f"<item {attrs}>{esc(snippet(ln.text, max_chars))}</item>")
    return "\n".join(out) or "(empty)"


async def score_ties_text(
    persona: Persona,
    llm: LLM,
    *,
    theme: str,
    window: int,
    transcript: Sequence[TranscriptLine],
    peers: Sequence[str],
    seed: int = 0,
    max_retries: int = 3,
) -> TieScores:
    """Ask ``persona``'s model to score each peer 0-5 from ``transcript`` (see module docstring)."""
    peer_list = [p for p in dict.fromkeys(peers) if p != persona.id]
    zero = dict.fromkeys(peer_list, 0)
    if not peer_list:
        return TieScores(agent_id=persona.id, window=window, scores={}, raw={})

    def parse(comp: Completion) -> dict[str, int]:
        return parse_ties(decode_json(comp.parsed, comp.text), peer_list)

    asked = await ask_validated(
        llm,
        stage="tie_score",
        system=system_prompt(persona, theme),
        prompt=render(
            "tie_score", transcript=render_transcript(transcript), peers=", ".join(peer_list)
        ),
        parse=parse,
        json_schema=tie_json_schema(peer_list),
        label="tie_score",
        max_retries=max_retries,
        temperature=0.0,
        max_tokens=40 + 16 * len(peer_list),
        seed=derive_seed(seed, persona.id, "tie", window),
    )
    raw = asked.value if asked.value is not None else zero
    return TieScores(
        agent_id=persona.id,
        window=window,
        scores={p: raw[p] / 5.0 for p in peer_list},
        raw=dict(raw),
        failure=asked.failure,
        prompt_tokens=asked.prompt_tokens,
    )
