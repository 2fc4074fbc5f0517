"""The registry pattern shared by every extension point."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from friendsim.agents.policies import POLICIES
from friendsim.analysis.sentiment import SENTIMENT
from friendsim.coach.kinds import COACHES
from friendsim.llm.registry import PROVIDERS
from friendsim.platform.feeds import RANKERS, make_ranker
from friendsim.registry import Plugin, Registry, RegistryError
from friendsim.runtime.config import ConfigError, parse_config


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    k: int = 2


def test_create_validates_params_and_passes_context() -> None:
    reg: Registry[tuple[int, str]] = Registry("widget", group="friendsim.test-widgets")
    reg.register("w", lambda *, k, who: (k, who), params=Params)
    assert reg.create("w", {"k": 5}, who="me") == (5, "me")
    assert reg.create("w", None, who="you") == (2, "you")
    with pytest.raises(RegistryError, match=r"widget 'w': parameter k"):
        reg.create("w", {"k": "many"}, who="me")
    with pytest.raises(RegistryError, match=r"widget 'w': parameter bogus"):
        reg.create("w", {"bogus": 1}, who="me")


def test_unknown_names_list_the_known_ones_and_the_group() -> None:
    reg: Registry[int] = Registry("widget", group="friendsim.test-widgets")
    reg.register("a", lambda: 1)
    reg.register("b", lambda: 2)
    with pytest.raises(RegistryError) as err:
        reg.get("c")
    assert "unknown widget 'c'; known: a, b" in str(err.value)
    assert "friendsim.test-widgets" in str(err.value)
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("a", lambda: 3)
    reg.register("a", lambda: 3, replace=True)
    assert reg.create("a") == 3


def test_every_extension_point_has_its_builtins() -> None:
    assert {"full", "chrono", "popularity", "interest"} <= set(RANKERS.names())
    assert {"anthropic", "openai", "local", "scripted"} <= set(PROVIDERS.names())
    assert {"baseline", "llm"} <= set(POLICIES.names())
    assert {"rule", "llm"} <= set(COACHES.names())
    assert {"vader", "lexicon", "neutral"} <= set(SENTIMENT.names())
    assert RANKERS.group == "friendsim.rankers" and PROVIDERS.group == "friendsim.providers"


def test_ranker_params_reach_the_ranker() -> None:
    ranker = make_ranker("popularity", {"half_life": 60.0, "candidates": 7})
    assert (ranker.half_life, ranker.candidates) == (60.0, 7)  # type: ignore[attr-defined]


def test_config_names_registered_entries_and_rejects_others() -> None:
    RANKERS.register("tmp-test-ranker", lambda: make_ranker("full"), replace=True)
    try:
        cfg = parse_config({"feed": {"ranker": "tmp-test-ranker"}})
        assert cfg.feed.ranker == "tmp-test-ranker"
    finally:
        RANKERS.unregister("tmp-test-ranker")
    with pytest.raises(ConfigError) as err:
        parse_config({"feed": {"ranker": "nope"}}, source="x.toml")
    assert "x.toml" in str(err.value) and "unknown feed ranker 'nope'" in str(err.value)
    with pytest.raises(ConfigError, match="parameter horizon"):
        parse_config({"feed": {"ranker": "chrono", "params": {"horizon": -1}}})
    with pytest.raises(ConfigError, match="unknown coach 'oracle'"):
        parse_config({"coach": {"kind": "oracle"}})
    with pytest.raises(ConfigError, match="unknown agent policy 'genius'"):
        parse_config({"agents": {"policy": "genius"}})


def test_a_plugin_object_or_a_bare_factory_are_both_entries() -> None:
    plugin = Plugin(factory=lambda *, k: k * 10, params=Params)
    reg: Registry[int] = Registry("widget", group="friendsim.test-widgets")
    reg.register("p", plugin.factory, params=plugin.params)
    assert reg.create("p") == 20
