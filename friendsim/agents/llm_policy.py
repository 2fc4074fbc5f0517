"""The LLM policy: plan -> generate each action's text in character -> Decision; vote -> Ballot.

Per wake-up: the observation is folded into memory, one plan request (JSON schema attached as
``LLMRequest.json_schema``) asks for exactly N actions, validated by :mod:`.schema` and re-asked
up to ``max_retries`` times with the error; then one content request per POST/COM/DM/REPOST
writes the text (plain text, re-asked when empty). The plan is judged action by action
(:func:`~friendsim.agents.schema.check_plan`): a plan is never thrown away for one bad action.
Each invalid action is re-asked *alone* (the plan and the model's answer as history, the error,
a one-action schema) up to ``max_retries`` times, then dropped with a ``Failure(stage="plan")``
(an ``ActionFailed`` event); the valid actions go ahead. Only an answer that is not a plan at
all (bad JSON, no ``actions`` list) is re-asked whole, and when it stays so the Decision has no
actions and one ``Failure(stage="plan")``. An action whose text fails is dropped with a
``Failure(stage="content")``. Nothing in here raises on model output.

Prompt profiles: ``compact`` (for small-context local models) shows fewer feed items with
shorter bodies, a shorter system prompt and plan instructions, ends texts at a blank line, and
lists the action types the coach's tips suggest first (``tips_first``: a 135M model mostly
writes the first type offered, so without it every plan was POSTs and COMs and no DM, with it
the plans follow the tips).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from friendsim.agents.asking import MAX_ERROR_CHARS, Asked, ask_validated, derive_seed
from friendsim.agents.memory import AgentMemory, snippet
from friendsim.agents.persona import Persona
from friendsim.agents.prompting import (
    dm_block,
    esc,
    esc_attr,
    plan_prompt,
    post_block,
    post_block_with,
    render,
    shown_feed,
    system_prompt,
    tips_first_order,
)
from friendsim.agents.schema import (
    ACTION_FIELDS,
    OutputError,
    check_plan,
    decode_json,
    parse_action,
    parse_some_votes,
    plan_items,
    plan_json_schema,
    vote_json_schema,
)
from friendsim.agents.survey import Question, SurveyReply, ask_survey
from friendsim.llm.base import LLM, Completion, Message, user
from friendsim.llm.stack import admission
from friendsim.vocabulary import (
    Action,
    Ballot,
    Decision,
    Failure,
    FeedItem,
    Observation,
)

TEXT_ACTIONS = ("POST", "COM", "DM", "REPOST")
T = TypeVar("T")


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
    parallel_votes: bool = True
    max_item_chars: int = 400
    compact: bool = False
    content_stop: tuple[str, ...] = ()
    tips_first: bool = False


COMPACT_PROFILE: dict[str, Any] = {
    "compact": True,
    "max_feed_items": 12,
    "max_item_chars": 160,
    "vote_chunk": 12,
    "content_stop": ("\n\n",),
    "tips_first": True,
}
"""The ``compact`` prompt profile's knobs (see module docstring)."""

PROMPT_PROFILES = ("full", "compact")


def profile_knobs(profile: str, provider_spec: str) -> dict[str, Any]:
    """:class:`LLMPolicyConfig` knobs of a prompt profile: ``full``, ``compact``, or ``auto``
    (compact for the in-process ``local:`` models, whose context and speed are small)."""
    if profile == "auto":
        profile = "compact" if provider_spec.strip().lower().startswith("local:") else "full"
    if profile not in PROMPT_PROFILES:
        raise ValueError(f"unknown prompt profile {profile!r}; known: auto, full, compact")
    return dict(COMPACT_PROFILE) if profile == "compact" else {}


def clean_text(comp: Completion, *, max_chars: int) -> str:
    """Validate/repair a content answer: unwrap quotes or a ``{"text": ...}`` object, drop
    repeated sentences (small models loop), cut to ``max_chars`` and end at a sentence
    boundary (a text cut by ``max_tokens`` loses its unfinished sentence; a text with no
    complete sentence is cut at a word and closed with a full stop). Raises OutputError when
    nothing usable is left."""
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
    text = sentence_text(text, max_chars)
    if not text:
        raise OutputError("empty_text", "the text was empty; write one to three sentences")
    return text


_QUOTES = "\"')]»”’"
_CLOSERS = ".!?…"
_SENTENCE = re.compile(r"\S.*?(?:[.!?…]+[\"')\]»”’]*(?=\s|$)|$)", re.DOTALL)


def _complete(sentence: str) -> bool:
    return sentence.rstrip(_QUOTES + " ")[-1:] in _CLOSERS


def sentence_text(text: str, max_chars: int) -> str:
    """``text`` without repeated sentences, at most ``max_chars`` long, ending at a sentence
    boundary (see :func:`clean_text`)."""
    seen: set[str] = set()
    sentences: list[str] = []
    for match in _SENTENCE.finditer(text):
        part = match.group(0).strip()
        key = " ".join(part.lower().split()).strip(_CLOSERS + _QUOTES + " ")
        if part and key not in seen:
            seen.add(key)
            sentences.append(part)
    keep = ""
    for part in sentences:
        candidate = f"{keep} {part}" if keep else part
        if len(candidate) > max_chars or not _complete(part):
            break
        keep = candidate
    if keep:
        return keep
    head = sentences[0] if sentences else ""
    if len(head) > max_chars - 1:
        cut = head[: max_chars - 1]
        space = cut.rfind(" ")
        head = cut[:space] if space > max_chars // 2 else cut
    head = head.rstrip(" ,;:-–—" + _QUOTES)
    if not head:
        return ""
    return head if _complete(head) else head + "."


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
        self._system: str | None = None
        self.last_prompt_tokens = 0

    @property
    def max_feed_items(self) -> int:
        """The most feed items a plan prompt shows: the runtime serves no more."""
        return self.config.max_feed_items

    @property
    def system(self) -> str:
        """The system prompt (the persona in the theme), made on first use: of a large
        population, many agents may never wake in a run."""
        if self._system is None:
            self._system = system_prompt(self.persona, self.theme, compact=self.config.compact)
        return self._system

    # --- surveys and persona changes ---------------------------------------------------------

    async def answer(
        self, *, survey: str, window: int, questions: Sequence[Question]
    ) -> SurveyReply:
        """Ask the model, in character; invalid answers are re-asked, then a failure."""
        asked = await ask_survey(
            self.llm,
            system=self.system,
            agent=self.persona.id,
            survey=survey,
            window=window,
            questions=questions,
            seed=self.rng_seed,
            max_retries=self.config.max_retries,
        )
        return SurveyReply(answers=asked.value, failure=asked.failure)

    def amend(self, persona: Persona) -> None:
        """Take a changed persona (an intervention): the system prompt follows it from now on."""
        if persona.id != self.persona.id:
            raise ValueError(f"persona {persona.id!r} is not agent {self.persona.id!r}")
        self.persona = persona
        self._system = None

    # --- decide ------------------------------------------------------------------------------

    async def decide(self, obs: Observation) -> Decision:
        """Plan and write this wake-up's actions (see module docstring)."""
        self.memory.observe(obs)
        if obs.n_actions <= 0:
            return Decision()
        cfg = self.config
        shown = shown_feed(obs, cfg.max_feed_items)
        order = tips_first_order(obs) if cfg.tips_first else tuple(obs.allowed)
        answer: list[object] = []

        def parse(comp: Completion) -> list[Action | OutputError]:
            value = decode_json(comp.parsed, comp.text)
            slots = check_plan(value, obs, shown=shown, self_id=self.persona.id)
            answer[:] = [value]
            return slots

        def schema(n: int) -> dict[str, object]:
            me = self.persona.id
            return plan_json_schema(
                n,
                order,
                users=sorted(set(obs.known_users) - {me}),
                post_ids=[item.post_id for item in shown],
                votable_ids=[item.post_id for item in shown if item.author != me],
                followees=sorted(set(obs.followees) - {me}),
            )

        async with admission(self.llm):
            prompt = plan_prompt(
                obs, self.memory.render(), max_feed_items=cfg.max_feed_items,
                item_chars=cfg.max_item_chars, compact=cfg.compact, action_order=order,
            )  # fmt: skip
            asked = await ask_validated(
                self.llm,
                stage="plan",
                system=self.system,
                prompt=prompt,
                parse=parse,
                json_schema=schema(obs.n_actions),
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
        history = (user(prompt), Message(role="assistant", content=_compact_json(answer[0])))
        planned: list[Action] = []
        failures: list[Failure] = []
        raw_items = plan_items(answer[0])
        for index, slot in enumerate(asked.value, start=1):
            if isinstance(slot, Action):
                planned.append(slot)
                continue
            fixed = await self._reask_action(obs, shown, index, slot, history, schema(1), planned)
            if isinstance(fixed, Action):
                planned.append(fixed)
            else:
                raw = raw_items[index - 1] if index <= len(raw_items) else None
                failures.append(_with_action(fixed, raw))
        by_id = {item.post_id: item for item in shown}
        jobs = [self._write(obs, i, a, by_id) for i, a in enumerate(planned)]
        if cfg.parallel_content:
            written = await asyncio.gather(*jobs)
        else:
            written = [await job for job in jobs]
        actions: list[Action] = []
        for result in written:
            if isinstance(result, Failure):
                failures.append(result)
            else:
                actions.append(result)
        return Decision(
            actions=tuple(actions),
            failures=tuple(failures),
            prompt_tokens=asked.prompt_tokens,
            notes=f"plan ok after {asked.attempts} attempt(s), {len(planned)}/{obs.n_actions} actions valid",
        )

    async def _reask_action(
        self,
        obs: Observation,
        shown: Sequence[FeedItem],
        index: int,
        error: OutputError,
        history: tuple[Message, ...],
        schema: dict[str, object],
        accepted: Sequence[Action],
    ) -> Action | Failure:
        """Ask again for action ``index`` alone (the rest of the plan stands), up to
        ``max_retries`` times; a Failure (stage ``plan``) when it stays invalid."""
        cfg = self.config
        if cfg.max_retries <= 0:
            return Failure(stage="plan", reason=error.reason, detail=error.detail[:1000])
        single = replace(obs, n_actions=1)

        def parse(comp: Completion) -> Action:
            items = plan_items(decode_json(comp.parsed, comp.text))
            if not items:
                raise OutputError("missing_action", "the answer holds no action")
            return parse_action(
                items[0], single, index=index, shown=shown, self_id=self.persona.id, taken=accepted
            )

        async with admission(self.llm):
            asked = await self._reask(index, error, parse, history, schema, obs)
        if asked.value is not None:
            return asked.value
        assert asked.failure is not None
        return replace(asked.failure, attempts=asked.failure.attempts + 1)

    async def _reask(
        self,
        index: int,
        error: OutputError,
        parse: Callable[[Completion], Action],
        history: tuple[Message, ...],
        schema: dict[str, object],
        obs: Observation,
    ) -> Asked[Action]:
        cfg = self.config
        return await ask_validated(
            self.llm,
            stage="plan",
            system=self.system,
            prompt=render("repair_action", index=index, error=error.detail[:MAX_ERROR_CHARS]),
            parse=parse,
            json_schema=schema,
            label="plan",
            max_retries=cfg.max_retries - 1,
            temperature=cfg.plan_temperature,
            max_tokens=max(64, cfg.plan_max_tokens // max(1, obs.n_actions) + 32),
            seed=derive_seed(self.rng_seed, self.persona.id, "plan-action", obs.window, index),
            history=history,
        )

    async def _write(
        self, obs: Observation, index: int, action: Action, by_id: dict[int, FeedItem]
    ) -> Action | Failure:
        if action.type not in TEXT_ACTIONS:
            return action
        async with admission(self.llm):
            return await self._write_admitted(obs, index, action, by_id)

    async def _write_admitted(
        self, obs: Observation, index: int, action: Action, by_id: dict[int, FeedItem]
    ) -> Action | Failure:
        cfg = self.config
        target = by_id.get(action.target_post) if action.target_post is not None else None
        match action.type:
            case "COM" if target is not None:
                context = "You are commenting on this post:\n" + post_block(
                    target, limit=cfg.max_item_chars
                )
                kind = "comment"
            case "REPOST" if target is not None:
                context = "You are reposting this post with your own comment:\n" + post_block(
                    target, limit=cfg.max_item_chars
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
            stop=cfg.content_stop,
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
        """Vote +1/-1/0 on each item not authored by this agent, in chunks of ``vote_chunk``.

        The chunks are asked concurrently (``parallel_votes``; one after another otherwise):
        each chunk's prompt, seed and schema depend only on its items, and the answers are
        merged in chunk order, so the ballot is the same whatever order they arrive in."""
        self.memory.observe(obs)
        cfg = self.config
        mine = self.persona.id
        todo = [i for i in items if i.author != mine]
        size = max(1, cfg.vote_chunk)
        jobs = [
            self._vote_chunk(obs, start, todo[start : start + size])
            for start in range(0, len(todo), size)
        ]
        if cfg.parallel_votes:
            answers = await _gather_or_cancel(jobs)
        else:
            answers = [await job for job in jobs]
        votes: dict[int, int] = {}
        failures: list[Failure] = []
        for got, failure in answers:
            votes.update(got)
            if failure is not None:
                failures.append(failure)
        self.memory.record_votes(votes, items)
        return Ballot(votes=votes, failures=tuple(failures))

    async def _vote_chunk(
        self, obs: Observation, start: int, chunk: Sequence[FeedItem]
    ) -> tuple[dict[int, int], Failure | None]:
        """Ask for the votes on one chunk (``start``: its offset, part of the seed).

        An answer that gives some votes unambiguously but leaves items out or votes one twice
        differently (:func:`parse_some_votes`) keeps those votes, and only the items still
        without one are asked again, in a vote request of their own (whose answer may repeat
        the votes already given: they are passed over); an answer with nothing
        usable is re-asked whole with the error, as any invalid answer. At most
        ``1 + max_retries`` requests in all; items still without a vote then are a
        ``Failure`` naming them, beside the votes obtained."""
        async with admission(self.llm):
            cfg = self.config
            votes: dict[int, int] = {}
            need = list(chunk)
            attempts = 0
            while True:
                asked = await self._vote_items(
                    obs, start, need, again=attempts, retries=cfg.max_retries - attempts,
                    settled=votes,
                )  # fmt: skip
                attempts += asked.attempts
                if asked.value is None:
                    assert asked.failure is not None
                    failure = replace(asked.failure, attempts=attempts)
                    if votes:  # a re-ask of some items only: name them
                        ids = [i.post_id for i in need]
                        failure = replace(failure, detail=f"{failure.detail[:800]} (asked again "
                                          f"for post ids {ids[:20]}, still without a vote)")  # fmt: skip
                    return votes, failure
                got, problem = asked.value
                votes.update(got)
                if problem is None:
                    return votes, None
                need = [i for i in need if i.post_id not in votes]
                if attempts > cfg.max_retries:
                    failure = Failure(stage="vote", reason=problem.reason,
                                      detail=problem.detail[:1000], attempts=attempts)  # fmt: skip
                    return votes, failure

    async def _vote_items(
        self,
        obs: Observation,
        start: int,
        chunk: Sequence[FeedItem],
        *,
        again: int,
        retries: int,
        settled: Mapping[int, int],
    ) -> Asked[tuple[dict[int, int], OutputError | None]]:
        """One vote request over ``chunk`` (``again``: the requests the chunk made before;
        ``settled``: the votes earlier answers gave on the chunk's other items, which an
        answer may repeat)."""
        cfg = self.config
        mine = self.persona.id
        ids = [i.post_id for i in chunk]
        relationship = self.memory.relationship_line
        lines: dict[str, str] = {}  # per author: an author has several items in a chunk
        blocks = []
        for i in chunk:
            line = lines.get(i.author)
            if line is None:
                line = lines[i.author] = relationship(i.author)
            blocks.append(post_block_with(i, "relationship", line, limit=cfg.max_item_chars))
        prompt = render("vote", items="\n".join(blocks), post_ids=", ".join([str(x) for x in ids]))

        def parse(comp: Completion) -> tuple[dict[int, int], OutputError | None]:
            return parse_some_votes(decode_json(comp.parsed, comp.text), ids, settled=settled)

        seed = derive_seed(self.rng_seed, mine, "vote", obs.window, start)
        return await ask_validated(
            self.llm,
            stage="vote",
            system=self.system,
            prompt=prompt,
            parse=parse,
            json_schema=vote_json_schema(ids),
            label="vote",
            agent=mine,
            max_retries=retries,
            temperature=cfg.vote_temperature,
            max_tokens=40 + 16 * len(ids),
            seed=seed if not again else derive_seed(seed, "again", again),
        )

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        """Remember the actions the runtime applied in ``window``."""
        self.memory.record_actions(window, applied)


async def _gather_or_cancel(jobs: Sequence[Awaitable[T]]) -> list[T]:
    """``asyncio.gather`` that cancels the other jobs when one raises (a replay's cache miss,
    a spent budget), so no request of an abandoned phase is left running."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))[:4000]


def _with_action(failure: Failure, raw: object) -> Failure:
    """The failure of a dropped plan action, carrying the model's action (known fields only,
    strings cut: model output is untrusted and goes into the log)."""
    if not isinstance(raw, dict):
        return failure
    kept: dict[str, Any] = {}
    for key in ACTION_FIELDS:
        value = raw.get(key)
        if isinstance(value, str):
            kept[key] = value[:80]
        elif value is None or isinstance(value, bool | int):
            kept[key] = value
    return replace(failure, action=kept)


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
