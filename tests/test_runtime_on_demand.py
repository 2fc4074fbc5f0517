"""Per-agent state made on first use (:class:`friendsim.runtime.on_demand.OnDemand`): policies
and observation contexts of agents that never act are never made, and a policy the
configuration cannot make still stops the set-up."""

from __future__ import annotations

from typing import Any

import pytest

from friendsim.agents.generator import generate_personas
from friendsim.agents.policies import POLICIES
from friendsim.runtime.config import parse_config
from friendsim.runtime.continuous import acquaintances, acquaintances_of
from friendsim.runtime.on_demand import OnDemand
from friendsim.runtime.policies_build import make_policies


def test_values_are_made_once_on_first_access_and_keys_are_all_there() -> None:
    made: list[str] = []

    def make(key: str) -> str:
        made.append(key)
        return key.upper()

    m = OnDemand(["a", "b", "c"], make)
    assert list(m) == ["a", "b", "c"] and len(m) == 3 and "b" in m and m.made == 0
    assert m["b"] == "B" and m["b"] == "B" and made == ["b"]
    assert m.get("zed") is None and "zed" not in m and made == ["b"]
    with pytest.raises(KeyError):
        m["zed"]
    m["d"] = "joined"
    assert list(m) == ["a", "b", "c", "d"] and m["d"] == "joined" and made == ["b"]
    del m["a"]
    assert list(m) == ["b", "c", "d"] and m.made == 2
    assert dict(m) == {"b": "B", "c": "C", "d": "joined"} and made == ["b", "c"]


def test_one_agents_acquaintances_alone_are_its_entry_of_all() -> None:
    for n in (5, 21, 200):
        agents = [f"a{i:03d}" for i in range(n)]
        everyone = acquaintances(agents, k=10, seed=7)
        for agent in agents[:: max(1, n // 7)]:
            assert acquaintances_of(agent, agents, k=10, seed=7) == everyone[agent]
            assert agent not in everyone[agent]
            assert len(everyone[agent]) == min(10, n - 1)


def test_policies_are_made_when_first_used_the_first_at_once() -> None:
    cfg = parse_config({"agents": {"count": 6, "policy": "baseline"}})
    personas = generate_personas(6, seed=cfg.experiment.seed)
    policies = make_policies(cfg, personas, {}, {})
    assert isinstance(policies, OnDemand) and len(policies) == 6 and policies.made == 1
    third = policies[personas[2].id]
    assert policies[personas[2].id] is third and policies.made == 2
    # made alone or among all, a policy is the same: its seed depends on its agent only
    again = make_policies(cfg, personas, {}, {})
    state = [again[p.id].rng.getstate() for p in personas]  # type: ignore[attr-defined]
    assert state == [policies[p.id].rng.getstate() for p in personas]  # type: ignore[attr-defined]
    assert len({str(s) for s in state}) == 6


def test_a_policy_the_config_cannot_make_fails_the_set_up() -> None:
    def broken(**context: Any) -> Any:
        raise ValueError("this policy needs a GPU")

    POLICIES.register("broken-for-test", broken)
    try:
        cfg = parse_config({"agents": {"count": 3, "policy": "broken-for-test"}})
        with pytest.raises(ValueError, match="needs a GPU"):
            make_policies(cfg, generate_personas(3, seed=1), {}, {})
    finally:
        POLICIES.unregister("broken-for-test")
