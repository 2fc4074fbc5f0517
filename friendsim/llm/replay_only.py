"""The provider of a run answered from its recorded answers alone (``[llm] cache = "replay"``:
``friendsim replay RUN --rerun``): the model's name, no client.

Replay mode never passes a request below the cache, so such a run sends nothing and must not
need what sending needs: an API key, a reachable server, the provider's SDK. The answers are
keyed by the model the recording run's provider reported (:meth:`LLMRequest.cache_key`), so the
stand-in reports exactly that name, derived from the spec as the provider derives it
(:func:`~friendsim.llm.registry.spec_model`), never guessed: a provider whose name the spec does
not fix (``local:``, ``scripted``, plug-ins) gets no stand-in and is built as in any run.
"""

from __future__ import annotations

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import CacheMissError
from friendsim.llm.registry import spec_model


class ReplayOnlyLLM:
    """Reports ``model`` and refuses every request (:class:`CacheMissError`, as the replay
    cache refuses a request it holds no answer for): nothing is ever sent."""

    def __init__(self, model: str) -> None:
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def complete(self, request: LLMRequest) -> Completion:
        last = request.messages[-1].content if request.messages else request.system
        raise CacheMissError(
            request.cache_key(self._model),
            request.label,
            f"a run answered from recorded answers only never asks {self._model}: {last[:60]}",
        )

    async def aclose(self) -> None:
        return None


def replay_only_provider(spec: str) -> LLM | None:
    """A :class:`ReplayOnlyLLM` under the name the provider of ``spec`` would report, or
    ``None`` where the spec does not fix that name (the caller builds the provider then)."""
    model = spec_model(spec)
    return None if model is None else ReplayOnlyLLM(model)
