"""Fakes for users' own tests: one beside each extension point, plus a small run builder.

Everything here is deterministic and needs no model, key or network:

* :class:`ScriptedLLM` — an LLM provider (``PROVIDERS``) that answers from a script or a
  responder function (:func:`plausible_responder` answers every friendsim request with valid
  JSON);
* :class:`StaticRanker` — a feed ranker (``RANKERS``) that serves fixed post ids;
* :class:`ScriptedPolicy` — an agent policy (``POLICIES``) that posts a fixed text each wake-up
  and votes a fixed value, recording the observations it was given;
  :meth:`ScriptedPolicy.factory` makes one per agent with the run's ``n_actions``;
* :class:`FakeCoach` — a coach (``COACHES``) that returns fixed tips and records its contexts;
* :class:`FakeModerator` — a moderator (``MODERATORS``) that answers fixed verdicts per post (or
  for a marker text) and records the items it was shown;
* :class:`FakeSentiment` — a sentiment model (``SENTIMENT``) that scores chosen texts (others a
  constant) and records the texts it scored;
* :class:`FakePersonaSource` — a persona source (``PERSONA_SOURCES``) that hands out fixed
  personas and records how it was called;
* :class:`FakeIntervention` — an intervention kind (``INTERVENTIONS``) that records the windows
  it was applied at and can broadcast a message;
* :func:`factory` — a registry factory that returns a given fake whatever the registry passes
  (``llm=``, ``context=``, a model spec), so a fake instance can be registered as it is;
* :func:`small_config` / :func:`run_small` — a complete small experiment (baseline policy,
  synthetic personas) run into a directory through the same assembly as ``friendsim run``;
* :func:`stop_after_window` — a stop request and the listener that sets it when a given window
  ends: a run (or resume) given both stops there as a Ctrl-C would, ``interrupted``.

A user's plug-in (or one of these fakes) is tested by registering it in the registry of its
extension point (``RANKERS``, ``POLICIES``, ``COACHES``, ``PROVIDERS``, ``SENTIMENT``,
``PERSONA_SOURCES``, ``MODERATORS``, ``INTERVENTIONS``) and naming it in :func:`small_config`'s
sections::

    COACHES.register("fake", factory(FakeCoach(tips)), replace=True)
    run_small(tmp_path / "run", small_config(coach={"kind": "fake"}))

Importing this module registers nothing and writes nothing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from friendsim._loop import run as run_on_loop
from friendsim.agents.persona import Persona
from friendsim.coach.base import FakeCoach
from friendsim.llm.scripted import ScriptedLLM
from friendsim.moderation.base import FakeModerator
from friendsim.platform.feeds.base import StaticRanker
from friendsim.runtime.assembly import RunResult, run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.engine import RunListener, WindowTally
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.vocabulary import Action, Ballot, Decision, FeedItem, Observation

if TYPE_CHECKING:
    from friendsim.agents.policies import PolicyContext
    from friendsim.runtime.interventions import RunOps

__all__ = [
    "FakeCoach",
    "FakeIntervention",
    "FakeModerator",
    "FakePersonaSource",
    "FakeSentiment",
    "ScriptedLLM",
    "ScriptedPolicy",
    "ScriptedPolicyFactory",
    "StaticRanker",
    "factory",
    "plausible_responder",
    "run_small",
    "small_config",
    "stop_after_window",
]

T = TypeVar("T")


def factory(fake: T) -> Callable[..., T]:
    """A factory for a registry's ``register`` that returns ``fake`` itself, whatever the
    registry calls it with: a coach's or moderator's ``llm=``, a policy's ``context=``, a
    provider's model name and options, a ranker's params. One instance then serves the whole
    run, so what it records (``FakeCoach.contexts``, ``FakeModerator.seen``,
    ``FakeSentiment.texts``, ``FakeIntervention.windows``, ``ScriptedLLM.calls``) is there to
    assert on afterwards::

        RANKERS.register("static", factory(StaticRanker([1, 2])), replace=True)
        COACHES.register("fake", factory(FakeCoach(tips)), replace=True)

    The entry takes no parameters, so the config must give it none (``[feed] params``,
    ``[coach] params`` left empty). For policies prefer :meth:`ScriptedPolicy.factory`, which
    makes one policy per agent with the run's ``n_actions``."""

    def make(*args: Any, **kwargs: Any) -> T:
        return fake

    return make


class ScriptedPolicy:
    """A policy that posts ``text`` on ``topic`` ``n_actions`` times every wake-up and votes
    ``vote`` on every item.

    ``observations`` keeps what it was shown (for assertions about feeds, guidance, rewards).
    ``n_actions`` should be the run's ``[experiment] n_actions`` (a wake with fewer actions is
    recorded as a ``short_plan`` failure): :meth:`factory` sets it from the run. ``text`` must
    be a non-blank string, ``topic`` a string that is empty or not blank, ``vote`` -1, 0 or 1
    and ``n_actions`` at least 1; else ``ValueError`` / ``TypeError`` naming the argument.
    """

    def __init__(
        self, *, text: str = "hello", topic: str = "testing", vote: int = 1, n_actions: int = 1
    ) -> None:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError(f"text must not be blank, got {text!r}: every post would be refused")
        if not isinstance(topic, str):
            raise TypeError(f"topic must be a string, got {type(topic).__name__}")
        if topic and not topic.strip():
            raise ValueError(f"topic must not be blank, got {topic!r}: every post would be refused")
        if isinstance(vote, bool) or vote not in (-1, 0, 1):
            raise ValueError(f"vote must be -1, 0 or 1, got {vote!r}")
        if isinstance(n_actions, bool) or not isinstance(n_actions, int) or n_actions < 1:
            raise ValueError(f"n_actions must be an int >= 1, got {n_actions!r}")
        self.text = text
        self.topic = topic
        self.vote_value = vote
        self.n_actions = n_actions
        self.observations: list[Observation] = []

    @classmethod
    def factory(
        cls, *, text: str = "hello", topic: str = "testing", vote: int = 1
    ) -> ScriptedPolicyFactory:
        """A policy factory for ``POLICIES.register``: the run calls it once per agent with
        ``context=`` and gets a :class:`ScriptedPolicy` that posts ``context.n_actions`` times
        per wake; ``.policies`` maps each agent id to its policy. The arguments are checked
        here, as the constructor does::

            make = ScriptedPolicy.factory(text="hi")
            POLICIES.register("scripted", make, replace=True)
            run_small(tmp_path / "run", small_config(agents={"policy": "scripted"}))
            make.policies["..."].observations
        """
        cls(text=text, topic=topic, vote=vote)  # the arguments' checks, before any run
        return ScriptedPolicyFactory(text=text, topic=topic, vote=vote)

    async def decide(self, obs: Observation) -> Decision:
        self.observations.append(obs)
        post = Action(type="POST", topic=self.topic, text=self.text)
        return Decision(actions=(post,) * self.n_actions)

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        return Ballot(votes={item.post_id: self.vote_value for item in items})

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        return None


class ScriptedPolicyFactory:
    """What :meth:`ScriptedPolicy.factory` returns: ``factory(context=PolicyContext)`` makes a
    :class:`ScriptedPolicy` with the run's ``n_actions`` and keeps it in ``policies`` (agent
    id -> policy)."""

    def __init__(self, *, text: str, topic: str, vote: int) -> None:
        self.text = text
        self.topic = topic
        self.vote = vote
        self.policies: dict[str, ScriptedPolicy] = {}

    def __call__(self, *, context: PolicyContext) -> ScriptedPolicy:
        policy = ScriptedPolicy(
            text=self.text, topic=self.topic, vote=self.vote, n_actions=context.n_actions
        )
        self.policies[context.persona.id] = policy
        return policy


def _check_score(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{where} must be a number in [-1, 1], got {type(value).__name__}")
    if not (math.isfinite(value) and -1.0 <= value <= 1.0):
        raise ValueError(f"{where} must be a number in [-1, 1], got {value!r}")
    return float(value)


class FakeSentiment:
    """A sentiment model that scores ``scores[text]`` for the texts it lists and ``default``
    for every other text, recording each text it was asked to score in ``texts``. Every score
    must be a finite number in [-1, 1] (else ``ValueError``/``TypeError`` naming it).

    Register it with :func:`factory` and name it in ``[rewards] sentiment``::

        SENTIMENT.register("fake", factory(FakeSentiment(default=1.0)), replace=True)
        small_config(rewards={"sentiment": "fake"})

    :func:`friendsim.analysis.sentiment.get_sentiment` keeps one instance per name for the
    whole process: register each fake under a name of its own, or call
    ``get_sentiment.cache_clear()`` after registering it."""

    def __init__(
        self, scores: Mapping[str, float] | None = None, *, default: float = 0.0, name: str = "fake"
    ) -> None:
        if scores is not None and not isinstance(scores, Mapping):
            raise TypeError(
                f"scores must be a mapping of text to score, got {type(scores).__name__}"
            )
        self.scores = {str(k): _check_score(v, f"scores[{k!r}]") for k, v in (scores or {}).items()}
        self.default = _check_score(default, "default")
        self.name = name
        self.texts: list[str] = []

    def score(self, text: str) -> float:
        self.texts.append(text)
        return self.scores.get(text, self.default)


class FakePersonaSource:
    """A persona source that hands out fixed ``personas`` (:class:`~friendsim.agents.persona.
    Persona` objects or mappings of their fields, validated here; ids must be unique) and
    records each call's ``count``, ``seed``, ``theme`` and params in ``calls``.

    The instance is itself the factory the registry calls (``source(count=, seed=, theme=,
    **params)``); the run takes the first ``count`` personas and refuses a source that has
    fewer::

        PERSONA_SOURCES.register("fixed", FakePersonaSource(personas), replace=True)
        small_config(agents={"personas": "fixed", "count": len(personas)})
    """

    def __init__(self, personas: Sequence[Persona | Mapping[str, Any]]) -> None:
        if isinstance(personas, str | bytes | Mapping) or not isinstance(personas, Sequence):
            raise TypeError(
                f"personas must be a sequence of Persona objects, got {type(personas).__name__}"
            )
        made: list[Persona] = []
        for i, p in enumerate(personas):
            if isinstance(p, Persona):
                made.append(p)
            elif isinstance(p, Mapping):
                made.append(Persona.model_validate(dict(p)))
            else:
                raise TypeError(
                    f"personas[{i}] must be a Persona or a mapping of its fields, "
                    f"got {type(p).__name__}"
                )
        seen: set[str] = set()
        for i, p in enumerate(made):
            if p.id in seen:
                raise ValueError(f"personas[{i}]: the id {p.id!r} is taken by an earlier persona")
            seen.add(p.id)
        self.personas: tuple[Persona, ...] = tuple(made)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, *, count: int, seed: int, theme: str, **params: Any) -> list[Persona]:
        self.calls.append({"count": count, "seed": seed, "theme": theme, **params})
        return list(self.personas)


class FakeIntervention:
    """An intervention that records the window of each time it was applied in ``windows`` and,
    with ``broadcast``, sends that text to everyone from ``sender`` (a ``broadcast_sent``
    event in the log). Register it with :func:`factory` and schedule it by name::

        INTERVENTIONS.register("fake", factory(FakeIntervention()), replace=True)
        small_config(interventions=[{"kind": "fake", "window": 2}])
    """

    def __init__(self, *, broadcast: str | None = None, sender: str = "platform") -> None:
        if broadcast is not None and (not isinstance(broadcast, str) or not broadcast.strip()):
            raise ValueError(f"broadcast must be a non-blank string or None, got {broadcast!r}")
        if not isinstance(sender, str) or not sender.strip():
            raise ValueError(f"sender must be a non-blank string, got {sender!r}")
        self.broadcast = broadcast
        self.sender = sender
        self.windows: list[int] = []

    async def apply(self, ops: RunOps, window: int) -> None:
        self.windows.append(window)
        if self.broadcast is not None:
            await ops.broadcast(self.broadcast, sender=self.sender)


def small_config(**sections: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> ExperimentConfig:
    """A 4-agent, 2-round baseline experiment (``n_actions = 2``, the rule coach, the ``full``
    ranker); ``sections`` change its TOML sections, e.g.
    ``small_config(feed={"ranker": "my-ranker"}, agents={"count": 6})``.

    A table (a mapping) is merged into the section of that name key by key; an array of tables
    (a list, e.g. ``interventions=[{"kind": "broadcast", "window": 1, "text": "hi"}]`` or
    ``surveys=[...]``) replaces it. Anything else is a ``TypeError`` naming the section; the
    result is validated as a config file is (:class:`~friendsim.runtime.config.ConfigError`)."""
    data: dict[str, Any] = {
        "experiment": {"name": "small", "seed": 1, "rounds": 2, "n_actions": 2},
        "agents": {"count": 4, "policy": "baseline"},
        "coach": {"enabled": True, "kind": "rule"},
        "feed": {"ranker": "full", "limit": 20},
    }
    for name, values in sections.items():
        if isinstance(values, Mapping):
            table = data.get(name)
            data[name] = {**table, **values} if isinstance(table, dict) else dict(values)
        elif isinstance(values, list | tuple):
            data[name] = list(values)
        else:
            raise TypeError(
                f"small_config({name}=...): a section is a table (a dict) or an array of tables "
                f"(a list of dicts), got {type(values).__name__}"
            )
    return parse_config(data, source="<small_config>")


def run_small(out_dir: str | Path, config: ExperimentConfig | None = None) -> RunResult:
    """Run ``config`` (default :func:`small_config`) into ``out_dir`` and return the result.

    Blocks until the run ends, also when called inside a running event loop (an async test):
    the run then goes to a worker thread with a loop of its own, as :func:`friendsim.api.run`
    does."""
    if config is not None and not isinstance(config, ExperimentConfig):
        raise TypeError(
            f"config must be a config object (small_config(...) or api.load_config(path)), "
            f"got {type(config).__name__}"
        )
    cfg = config if config is not None else small_config()
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_on_loop(run_experiment(cfg, out_dir=out_dir))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="friendsim-run-small") as pool:
        return pool.submit(lambda: run_on_loop(run_experiment(cfg, out_dir=out_dir))).result()


class _StopAfterWindow(RunListener):
    def __init__(self, window: int, stop: asyncio.Event) -> None:
        self.window = window
        self.stop = stop

    def window_ended(self, tally: WindowTally) -> None:
        if tally.window == self.window:
            self.stop.set()


def stop_after_window(window: int) -> tuple[asyncio.Event, RunListener]:
    """A stop event and a listener that sets it when ``window`` ends: pass both to
    :func:`~friendsim.runtime.assembly.run_experiment` (or a resume) as ``stop`` and
    ``listener``, and the run stops ``interrupted`` after that window, as a Ctrl-C there would.
    ``window`` is an int >= 1 (``TypeError`` / ``ValueError`` otherwise: a listener waiting for
    a window that never comes would never stop the run)."""
    if isinstance(window, bool) or not isinstance(window, int):
        raise TypeError(f"window must be an int >= 1, got {type(window).__name__} {window!r}")
    if window < 1:
        raise ValueError(f"window must be >= 1 (windows count from 1), got {window}")
    stop = asyncio.Event()
    return stop, _StopAfterWindow(window, stop)
