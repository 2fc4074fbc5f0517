"""Choose a provider by a spec string, through lazily imported factories.

Spec grammar::

    scripted | scripted:<name>
    anthropic:<model>                         e.g. anthropic:claude-haiku-4-5
    openai:<model>                            e.g. openai:gpt-4o-mini (api.openai.com)
    openai:<url>[,<url>...]#<model>           any OpenAI-compatible server(s); several = a pool
    local:<name>                              e.g. local:smollm2 (offline llama.cpp model)

    <name>:<anything>                         a provider another package registered

:data:`PROVIDERS` is the provider extension point: other packages add providers through the
``friendsim.providers`` entry-point group (see :mod:`friendsim.registry`) under a lowercase
name without ':'; their factory is called as ``factory(<anything>, **options)`` and returns an
object with the :class:`~friendsim.llm.base.LLM` protocol. The built-in factories are named as
``"module:function"`` and imported only when their provider is asked for, so importing friendsim
never imports an SDK. A missing optional dependency becomes a :class:`ProviderConfigError` with
the install command.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from friendsim.llm.base import LLM
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.redact import mask_userinfo
from friendsim.llm.urls import url_problem
from friendsim.registry import Registry, RegistryError


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderSpec:
    """A parsed spec: the provider, its model (or name) and any explicit endpoint URLs."""

    provider: str
    model: str
    base_urls: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class _Factory:
    target: str  # "module:function"
    install_hint: str
    model_required: bool = True
    urls_allowed: bool = False
    names_model: bool = False
    """Its provider reports :func:`model_id` of the spec's provider and model, whatever the
    options and endpoints: the model is known without building the provider."""


_FACTORIES: dict[str, _Factory] = {
    "anthropic": _Factory(
        target="friendsim.llm.anthropic_provider:create_anthropic_llm",
        install_hint="pip install anthropic",
        names_model=True,
    ),
    "openai": _Factory(
        target="friendsim.llm.openai_provider:create_openai_llm",
        install_hint="pip install openai",
        urls_allowed=True,
        names_model=True,
    ),
    "local": _Factory(
        target="friendsim.llm.local:create_local_llm",
        install_hint="pip install 'friendsim[local]'",
    ),
    "scripted": _Factory(
        target="friendsim.llm.scripted:create_scripted_llm",
        install_hint="(ships with friendsim)",
        model_required=False,
    ),
}


def _lazy(provider: str) -> Callable[..., LLM]:
    def factory(model: str, /, **options: Any) -> LLM:
        return _load(provider)(model, **options)

    factory.__name__ = f"create_{provider}_llm"
    return factory


def _name_problem(name: str) -> str | None:
    """Why no spec could name provider ``name`` (None when one can): :func:`parse_spec` splits a
    spec at its first ':' and lowercases the part before it."""
    if name != name.lower() or ":" in name:
        return (
            "LLM provider names are lowercase without ':' (a spec '<name>:<model>' is split at "
            "its first ':' and the name lowercased), so no spec could name it"
        )
    return None


PROVIDERS: Registry[LLM] = Registry(
    "LLM provider", group="friendsim.providers", protocol=LLM, name_problem=_name_problem
)
"""The provider extension point (entry-point group ``friendsim.providers``); names are lowercase
without ':'."""
for _name in _FACTORIES:
    PROVIDERS.register(_name, _lazy(_name), summary=_FACTORIES[_name].target)


def providers() -> tuple[str, ...]:
    """Names of the known providers (built-in and registered by other packages)."""
    return PROVIDERS.names()


def parse_spec(spec: str) -> ProviderSpec:
    """Parse ``spec``; raises :class:`ProviderConfigError` naming what is wrong (the spec shown
    with any ``user:password@`` masked). Endpoint URLs must pass
    :func:`~friendsim.llm.urls.url_problem` (a host, a port from 1 to 65535, no credentials)."""
    if not isinstance(spec, str) or not spec.strip():
        raise ProviderConfigError(f"empty LLM spec {spec!r}; expected e.g. 'openai:gpt-4o-mini'")
    spec = spec.strip()
    shown = mask_userinfo(spec)
    provider, sep, rest = spec.partition(":")
    provider = provider.lower()
    factory = _FACTORIES.get(provider)
    rest = rest.strip()
    if factory is None:
        if provider not in PROVIDERS:
            raise ProviderConfigError(
                f"unknown LLM provider {provider!r} in spec {shown!r}; known: "
                f"{', '.join(providers())}"
            )
        try:
            PROVIDERS.get(provider)  # imports the plug-in: one that cannot load is named here
        except RegistryError as exc:
            raise ProviderConfigError(str(exc)) from None
        return ProviderSpec(provider=provider, model=rest)
    if "://" in rest:
        if not factory.urls_allowed:
            raise ProviderConfigError(f"provider {provider!r} takes no URL (spec {shown!r})")
        urls_part, hash_sep, model = rest.rpartition("#")
        if not hash_sep or not model.strip():
            raise ProviderConfigError(
                f"spec {shown!r} names endpoint URLs but no model; write '{provider}:<url>#<model>'"
            )
        urls = tuple(u.strip() for u in urls_part.split(",") if u.strip())
        for url in urls:
            _check_url(url, shown)
        return ProviderSpec(provider=provider, model=model.strip(), base_urls=urls)
    if factory.model_required and (not sep or not rest):
        raise ProviderConfigError(f"spec {shown!r} names no model; write '{provider}:<model>'")
    return ProviderSpec(provider=provider, model=rest)


def model_id(provider: str, model: str) -> str:
    """The ``model`` that the built-in hosted providers (``anthropic:``, ``openai:``) report for
    a spec's ``provider`` and ``model``: the name their answers are cached and priced under."""
    return f"{provider}:{model}"


def spec_model(spec: str) -> str | None:
    """The ``model`` that the provider :func:`create_llm` builds for ``spec`` reports, where the
    spec alone fixes it: :func:`model_id` for ``anthropic:`` and ``openai:`` (one endpoint, a
    pool or an endpoints file alike); ``None`` for the others (a ``local:`` model is named by
    the file it finds, ``scripted`` and plug-in providers name themselves). Builds nothing and
    reads no key."""
    parsed = parse_spec(spec)
    factory = _FACTORIES.get(parsed.provider)
    if factory is None or not factory.names_model:
        return None
    return model_id(parsed.provider, parsed.model)


def _check_url(url: str, shown: str) -> None:
    problem = url_problem(url)
    if problem is not None:
        raise ProviderConfigError(f"bad endpoint URL {problem} (in spec {shown!r})")


def _load(provider: str) -> Callable[..., LLM]:
    factory = _FACTORIES[provider]
    module_name, _, func_name = factory.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ProviderConfigError(
            f"provider {provider!r} needs a package that is not installed ({exc.name}); "
            f"install it with: {factory.install_hint}"
        ) from exc
    func: Callable[..., LLM] | None = module.__dict__.get(func_name)
    if func is None:
        raise ProviderConfigError(f"provider {provider!r}: {factory.target} does not exist")
    return func


def create_llm(spec: str, **options: Any) -> LLM:
    """Build the provider named by ``spec``; ``options`` go to its factory.

    ``anthropic`` and ``openai`` factories receive ``(model, base_urls=..., **options)``,
    ``local`` receives ``(name, **options)``, ``scripted`` receives ``(name, **options)``.
    A plug-in factory whose signature does not take these arguments, or that returns an object
    without the :class:`~friendsim.llm.base.LLM` methods, is a :class:`ProviderConfigError`
    naming its entry point.
    """
    parsed = parse_spec(spec)
    if parsed.provider == "openai" and parsed.base_urls:
        if "base_urls" in options or "base_url" in options:
            raise ProviderConfigError(
                f"spec {spec!r} names endpoint URLs; do not also pass base_url(s) options"
            )
        options = {**options, "base_urls": parsed.base_urls}
    try:
        return PROVIDERS.build(parsed.provider, parsed.model, **options)
    except RegistryError as exc:
        raise ProviderConfigError(str(exc)) from exc
