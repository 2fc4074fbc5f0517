"""The LLM policy: plan -> generate each action's text in character -> Decision; vote -> Ballot.

Per wake-up: the observation is folded into memory, one plan request (JSON schema attached as
``LLMRequest.json_schema``) asks for exactly N actions, validated by :mod:`.schema` and re-asked
up to ``max_retries`` times with the error; then one content request per POST/COM/DM/REPOST
writes the text (plain text, re-asked when empty). A plan that stays invalid yields a Decision
with no actions and one ``Failure(stage="plan")``; an action whose text fails is dropped with a
``Failure(stage="content")``. Nothing in here raises on model output.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass

from friendsim.agents.asking import ask_validated, derive_seed
from friendsim.agents.memory import AgentMemory, snippet
from friendsim.agents.persona import Persona
from friendsim.agents.policy import (
    Action,
    Ballot,
    Decision,
    Failure,
    FeedItem,
    Observation,
)
from friendsim.agents.prompting import (
    dm_block,
    esc,
    esc_attr,
    plan_prompt,
    post_block,
    render,
    shown_feed,
    system_prompt,
)
from friendsim.agents.schema import (
    OutputError,
    decode_json,
    parse_plan,
    parse_votes,
    plan_json_schema,
    vote_json_schema,
)
from friendsim.llm.base import LLM, Completion

TEXT_ACTIONS = ("POST", "COM", "DM", "REPOST")


@dataclass(frozen=True, kw_only=True, slots=True)
class LLMPolicyConfig:
    """Knobs of the LLM policy. Defaults follow the paper where it says anything."""

    max_retries: int = 3
    max_feed_items: int = 100
    max_text_chars: int = 280
    vote_chunk: int = 40
    plan_temperature: float = 0.7
    content_temperature: float = 0.9
    vote_temperature: float = 0.3
    plan_max_tokens: int = 800
    content_max_tokens: int = 200
    parallel_content: bool = True


def clean_text(comp: Completion, *, max_chars: int) -> str:
    """Validate/repair a content answer: unwrap quotes or a ``{"text": ...}`` object, trim,
    cut at a word boundary to ``max_chars``. Raises OutputError when nothing usable is left."""
    text = comp.text if isinstance(comp.text, str) else ""
    if (
        not text.strip()
        and isinstance(comp.parsed, dict)
        and isinstance(comp.parsed.get("text"), str)
    ):
        text = comp.parsed["text"]
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            obj = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            text = obj["text"].strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    text = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if not text:
        raise OutputError("empty_text", "the text was empty; write one to three sentences")
    if len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space > max_chars // 2 else cut).rstrip()
    return text


class LLMPolicy:
    """Policy backed by a language model. One instance per agent (it owns the agent's memory)."""

    def __init__(
        self,
        persona: Persona,
        llm: LLM,
        *,
        theme: str,
        n_actions: int = 3,
        rng_seed: int = 0,
        config: LLMPolicyConfig | None = None,
        memory: AgentMemory | None = None,
    ) -> None:
        self.persona = persona
        self.llm = llm
        self.theme = theme
        self.n_actions = n_actions
        self.rng_seed = rng_seed
        self.config = config or LLMPolicyConfig()
        self.memory = memory or AgentMemory(persona.id)
        self.system = system_prompt(persona, theme)
        self.last_prompt_tokens = 0

    # --- decide ------------------------------------------------------------------------------

    async def decide(self, obs: Observation) -> Decision:
        """Plan and write this wake-up's actions (see module docstring)."""
        self.memory.observe(obs)
        if obs.n_actions <= 0:
            return Decision()
        cfg = self.config
        shown = shown_feed(obs, cfg.max_feed_items)
        prompt = plan_prompt(obs, self.memory.render(), max_feed_items=cfg.max_feed_items)

        def parse(comp: Completion) -> tuple[Action, ...]:
            return parse_plan(
                decode_json(comp.parsed, comp.text), obs, shown=shown, self_id=self.persona.id
            )

        asked = await ask_validated(
            self.llm,
            stage="plan",
            system=self.system,
            prompt=prompt,
            parse=parse,
            json_schema=plan_json_schema(
                obs.n_actions,
                obs.allowed,
                users=sorted(set(obs.known_users) - {self.persona.id}),
                post_ids=[item.post_id for item in shown],
            ),
            label="plan",
            agent=self.persona.id,
            max_retries=cfg.max_retries,
            temperature=cfg.plan_temperature,
            max_tokens=cfg.plan_max_tokens,
            seed=derive_seed(self.rng_seed, self.persona.id, "plan", obs.window),
        )
        self.last_prompt_tokens = asked.prompt_tokens
        if asked.value is None:
            assert asked.failure is not None
            return Decision(failures=(asked.failure,), prompt_tokens=asked.prompt_tokens,
                            notes=f"plan failed after {asked.attempts} attempts")  # fmt: skip
        planned = asked.value
        by_id = {item.post_id: item for item in shown}
        jobs = [self._write(obs, i, a, by_id) for i, a in enumerate(planned)]
        if cfg.parallel_content:
            written = await asyncio.gather(*jobs)
        else:
            written = [await job for job in jobs]
        actions: list[Action] = []
        failures: list[Failure] = []
        for result in written:
            if isinstance(result, Failure):
                failures.append(result)
            else:
                actions.append(result)
        return Decision(
            actions=tuple(actions),
            failures=tuple(failures),
            prompt_tokens=asked.prompt_tokens,
            notes=f"plan ok after {asked.attempts} attempt(s)",
        )

    async def _write(
        self, obs: Observation, index: int, action: Action, by_id: dict[int, FeedItem]
    ) -> Action | Failure:
        if action.type not in TEXT_ACTIONS:
            return action
        cfg = self.config
        target = by_id.get(action.target_post) if action.target_post is not None else None
        match action.type:
            case "COM" if target is not None:
                context = "You are commenting on this post:\n" + post_block(target)
                kind = "comment"
            case "REPOST" if target is not None:
                context = "You are reposting this post with your own comment:\n" + post_block(
                    target
                )
                kind = "repost comment"
            case "DM":
                assert action.recipient is not None
                rel = self.memory.relationship_line(action.recipient)
                earlier = [m for m in obs.inbox if m.sender == action.recipient][-3:]
                context = f'You are writing a direct message to user "{esc_attr(action.recipient)}" (your history: {esc(rel)}).'
                if earlier:
                    context += "\nTheir recent messages to you:\n" + "\n".join(
                        dm_block(m) for m in earlier
                    )
                kind = "direct message"
            case _:
                context = "You are writing a new public post."
                kind = "post"
        mention_line = (
            f' Address @{action.mention} in the text (write "@{action.mention}").'
            if action.mention
            else ""
        )
        prompt = render(
            "content", kind=kind, style=esc(self.persona.style or "plain"), context=context,
            topic=esc(action.topic), tone=action.tone, mention_line=mention_line,
            max_chars=cfg.max_text_chars,
        )  # fmt: skip

        def parse(comp: Completion) -> str:
            return clean_text(comp, max_chars=cfg.max_text_chars)

        asked = await ask_validated(
            self.llm,
            stage="content",
            system=self.system,
            prompt=prompt,
            parse=parse,
            json_schema=None,
            label="content",
            agent=self.persona.id,
            max_retries=cfg.max_retries,
            temperature=cfg.content_temperature,
            max_tokens=cfg.content_max_tokens,
            seed=derive_seed(self.rng_seed, self.persona.id, "content", obs.window, index),
            action=_action_dict(action),
        )
        if asked.value is None:
            assert asked.failure is not None
            return asked.failure
        text = asked.value
        if action.mention and f"@{action.mention}" not in text:
            text = f"@{action.mention} {text}"
        return Action(type=action.type, topic=action.topic, tone=action.tone, target_post=action.target_post,
                      recipient=action.recipient, mention=action.mention, text=text)  # fmt: skip

    # --- vote --------------------------------------------------------------------------------

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        """Vote +1/-1/0 on each item not authored by this agent, in chunks of ``vote_chunk``."""
        self.memory.observe(obs)
        cfg = self.config
        mine = self.persona.id
        todo = [i for i in items if i.author != mine]
        votes: dict[int, int] = {}
        failures: list[Failure] = []
        for start in range(0, len(todo), max(1, cfg.vote_chunk)):
            chunk = todo[start : start + max(1, cfg.vote_chunk)]
            ids = [i.post_id for i in chunk]
            prompt = render(
                "vote",
                items="\n".join(
                    post_block(i, extra={"relationship": self.memory.relationship_line(i.author)})
                    for i in chunk
                ),
                post_ids=", ".join(str(x) for x in ids),
            )

            def parse(comp: Completion, ids: Sequence[int] = ids) -> dict[int, int]:
                return parse_votes(decode_json(comp.parsed, comp.text), ids)

            asked = await ask_validated(
                self.llm,
                stage="vote",
                system=self.system,
                prompt=prompt,
                parse=parse,
                json_schema=vote_json_schema(ids),
                label="vote",
                agent=mine,
                max_retries=cfg.max_retries,
                temperature=cfg.vote_temperature,
                max_tokens=40 + 16 * len(ids),
                seed=derive_seed(self.rng_seed, mine, "vote", obs.window, start),
            )
            if asked.value is None:
                assert asked.failure is not None
                failures.append(asked.failure)
            else:
                votes.update(asked.value)
        self.memory.record_votes(votes, items)
        return Ballot(votes=votes, failures=tuple(failures))

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        """Remember the actions the runtime applied in ``window``."""
        self.memory.record_actions(window, applied)


def _action_dict(a: Action) -> dict[str, object]:
    return {
        "type": a.type, "topic": a.topic, "tone": a.tone, "target_post": a.target_post,
        "recipient": a.recipient, "mention": a.mention, "text": snippet(a.text, 200),
    }  # fmt: skip


def make_llm_policy(
    persona: Persona,
    llm: LLM,
    *,
    theme: str,
    n_actions: int = 3,
    rng_seed: int = 0,
    config: LLMPolicyConfig | None = None,
) -> LLMPolicy:
    """The LLM policy for one agent (see :class:`LLMPolicy`)."""
    return LLMPolicy(
        persona, llm, theme=theme, n_actions=n_actions, rng_seed=rng_seed, config=config
    )
