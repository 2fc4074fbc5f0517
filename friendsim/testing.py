"""Fakes for users' own tests: one beside each extension point, plus a small run builder.

Everything here is deterministic and needs no model, key or network:

* :class:`ScriptedLLM` — an LLM provider that answers from a script or a responder function
  (:func:`plausible_responder` answers every friendsim request with valid JSON);
* :class:`StaticRanker` — a feed ranker that serves fixed post ids;
* :class:`ScriptedPolicy` — an agent policy that posts a fixed text each wake-up and votes a
  fixed value, recording the observations it was given;
* :class:`FakeCoach` — a coach that returns fixed tips and records its contexts;
* :class:`FakeModerator` — a moderator that answers fixed verdicts per post (or for a marker
  text) and records the items it was shown;
* :func:`small_config` / :func:`run_small` — a complete small experiment (baseline policy,
  synthetic personas) run into a directory through the same assembly as ``friendsim run``;
* :func:`stop_after_window` — a stop request and the listener that sets it when a given window
  ends: a run (or resume) given both stops there as a Ctrl-C would, ``interrupted``.

A user's plug-in can be tested by registering it in the registry of its extension point
(``RANKERS``, ``POLICIES``, ``COACHES``, ``PROVIDERS``, ``SENTIMENT``, ``PERSONA_SOURCES``,
``MODERATORS``, ``INTERVENTIONS``) and
naming it in :func:`small_config`'s overrides.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from friendsim.coach.base import FakeCoach
from friendsim.llm.scripted import ScriptedLLM
from friendsim.moderation.base import FakeModerator
from friendsim.platform.feeds.base import StaticRanker
from friendsim.runtime.assembly import RunResult, run_experiment
from friendsim.runtime.config import ExperimentConfig, parse_config
from friendsim.runtime.engine import RunListener, WindowTally
from friendsim.runtime.scripted_mind import plausible_responder
from friendsim.vocabulary import Action, Ballot, Decision, FeedItem, Observation

__all__ = [
    "FakeCoach",
    "FakeModerator",
    "ScriptedLLM",
    "ScriptedPolicy",
    "StaticRanker",
    "plausible_responder",
    "run_small",
    "small_config",
    "stop_after_window",
]


class ScriptedPolicy:
    """A policy that posts ``text`` on ``topic`` every wake-up and votes ``vote`` on every item.

    ``observations`` keeps what it was shown (for assertions about feeds, guidance, rewards).
    """

    def __init__(self, *, text: str = "hello", topic: str = "testing", vote: int = 1) -> None:
        if vote not in (-1, 0, 1):
            raise ValueError(f"vote must be -1, 0 or 1, got {vote}")
        self.text = text
        self.topic = topic
        self.vote_value = vote
        self.observations: list[Observation] = []

    async def decide(self, obs: Observation) -> Decision:
        self.observations.append(obs)
        return Decision(actions=(Action(type="POST", topic=self.topic, text=self.text),))

    async def vote(self, obs: Observation, items: tuple[FeedItem, ...]) -> Ballot:
        return Ballot(votes={item.post_id: self.vote_value for item in items})

    def record_outcome(self, window: int, applied: tuple[Action, ...]) -> None:
        return None


def small_config(**sections: Mapping[str, Any]) -> ExperimentConfig:
    """A 4-agent, 2-round baseline experiment; ``sections`` update its TOML sections, e.g.
    ``small_config(feed={"ranker": "my-ranker"}, agents={"count": 6})``."""
    data: dict[str, dict[str, Any]] = {
        "experiment": {"name": "small", "seed": 1, "rounds": 2, "n_actions": 2},
        "agents": {"count": 4, "policy": "baseline"},
        "coach": {"enabled": True, "kind": "rule"},
        "feed": {"ranker": "full", "limit": 20},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return parse_config(data, source="<small_config>")


def run_small(out_dir: str | Path, config: ExperimentConfig | None = None) -> RunResult:
    """Run ``config`` (default :func:`small_config`) into ``out_dir`` and return the result."""
    cfg = config if config is not None else small_config()
    return asyncio.run(run_experiment(cfg, out_dir=out_dir))


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
    ``listener``, and the run stops ``interrupted`` after that window, as a Ctrl-C there would."""
    stop = asyncio.Event()
    return stop, _StopAfterWindow(window, stop)
