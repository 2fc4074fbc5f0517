"""Agents: personas, memory, prompts and the policies behind :class:`friendsim.vocabulary.Policy`.

Public entry points are re-exported here; importing this package has no side effects.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from friendsim._lazy import lazy_exports

if TYPE_CHECKING:
    from friendsim.agents.baseline import BaselinePolicy, make_baseline_policy
    from friendsim.agents.generator import dominant_lambdas, generate_personas
    from friendsim.agents.llm_policy import LLMPolicy, LLMPolicyConfig, make_llm_policy
    from friendsim.agents.memory import AgentMemory, estimate_tokens
    from friendsim.agents.persona import COMPONENTS, TRAITS, Persona
    from friendsim.agents.persona_io import (
        PersonaFileError,
        load_personas,
        save_personas,
        save_personas_csv,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "BaselinePolicy": "friendsim.agents.baseline",
        "make_baseline_policy": "friendsim.agents.baseline",
        "dominant_lambdas": "friendsim.agents.generator",
        "generate_personas": "friendsim.agents.generator",
        "LLMPolicy": "friendsim.agents.llm_policy",
        "LLMPolicyConfig": "friendsim.agents.llm_policy",
        "make_llm_policy": "friendsim.agents.llm_policy",
        "AgentMemory": "friendsim.agents.memory",
        "estimate_tokens": "friendsim.agents.memory",
        "COMPONENTS": "friendsim.agents.persona",
        "TRAITS": "friendsim.agents.persona",
        "Persona": "friendsim.agents.persona",
        "PersonaFileError": "friendsim.agents.persona_io",
        "load_personas": "friendsim.agents.persona_io",
        "save_personas": "friendsim.agents.persona_io",
        "save_personas_csv": "friendsim.agents.persona_io",
    },
)

__all__ = [
    "COMPONENTS",
    "TRAITS",
    "AgentMemory",
    "BaselinePolicy",
    "LLMPolicy",
    "LLMPolicyConfig",
    "Persona",
    "PersonaFileError",
    "dominant_lambdas",
    "estimate_tokens",
    "generate_personas",
    "load_personas",
    "make_baseline_policy",
    "make_llm_policy",
    "save_personas",
    "save_personas_csv",
]
