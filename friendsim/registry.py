"""One registry pattern for every extension point: a name maps to a factory and a params model.

friendsim's extension points (LLM providers, feed rankers, agent policies, coaches, sentiment
models, persona sources, moderators, interventions) are each a :class:`Registry`. friendsim registers its own entries when
the component's module is imported; other packages add theirs without editing friendsim through
Python entry points in the registry's group (``friendsim.providers``, ``friendsim.rankers``,
``friendsim.policies``, ``friendsim.coaches``, ``friendsim.sentiment``, ``friendsim.personas``,
``friendsim.moderators``, ``friendsim.interventions``)::

    # pyproject.toml of a third-party package
    [project.entry-points."friendsim.rankers"]
    recent-first = "my_package.rankers:recent_first"

An entry point names either a :class:`Plugin` (factory + params model) or a bare factory (no
parameters). Entry points are read once, the first time a name is looked up that friendsim does
not know, so importing friendsim stays cheap and a broken third-party package cannot break a run
that does not use it. ``create(name, params)`` validates ``params`` against the entry's pydantic
model first, so a bad parameter is a clear error naming the entry and the key.

This module imports nothing from friendsim: it sits at the bottom of the layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T")


class RegistryError(ValueError):
    """An unknown name, a bad parameter or a broken plug-in; the message names which."""


class NoParams(BaseModel):
    """The params model of an entry that takes no parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, kw_only=True, slots=True)
class Plugin(Generic[T]):
    """What an entry point (or :meth:`Registry.register`) provides: ``factory(**params)``."""

    factory: Callable[..., T]
    params: type[BaseModel] = NoParams
    summary: str = ""


class Registry(Generic[T]):
    """Name -> :class:`Plugin` for one extension point (see the module docstring)."""

    def __init__(self, kind: str, *, group: str) -> None:
        self.kind = kind
        self.group = group
        self._entries: dict[str, Plugin[T]] = {}
        self._scanned = False

    def register(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        params: type[BaseModel] = NoParams,
        summary: str = "",
        replace: bool = False,
    ) -> None:
        """Add ``name``; registering a taken name needs ``replace=True``."""
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Plugin(factory=factory, params=params, summary=summary)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plug-ins that replace a built-in)."""
        self._entries.pop(name, None)

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        for ep in metadata.entry_points(group=self.group):
            if ep.name in self._entries:
                continue
            try:
                loaded = ep.load()
            except Exception as exc:
                raise RegistryError(
                    f"{self.kind} {ep.name!r} from entry point {ep.value!r} "
                    f"(group {self.group}) failed to load: {type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(loaded, Plugin):
                self._entries[ep.name] = loaded
            elif callable(loaded):
                self._entries[ep.name] = Plugin(factory=loaded)
            else:
                raise RegistryError(
                    f"{self.kind} entry point {ep.name!r} ({ep.value!r}) is neither a "
                    "friendsim.registry.Plugin nor a callable factory"
                )

    def names(self) -> tuple[str, ...]:
        """Every registered name, entry points included, sorted."""
        self._scan()
        return tuple(sorted(self._entries))

    def __contains__(self, name: object) -> bool:
        if name in self._entries:
            return True
        self._scan()
        return name in self._entries

    def get(self, name: str) -> Plugin[T]:
        """The entry ``name``; :class:`RegistryError` listing the known names otherwise."""
        entry = self._entries.get(name)
        if entry is None:
            self._scan()
            entry = self._entries.get(name)
        if entry is None:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'} "
                f"(others can be added through the {self.group!r} entry-point group)"
            )
        return entry

    def check_params(self, name: str, params: Mapping[str, Any] | None = None) -> BaseModel:
        """``params`` validated against ``name``'s params model."""
        entry = self.get(name)
        try:
            return entry.params.model_validate(dict(params or {}))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(p) for p in err.get("loc", ())) or "(params)"
            msg = str(err.get("msg")).removeprefix("Value error, ")
            raise RegistryError(f"{self.kind} {name!r}: parameter {key}: {msg}") from None

    def create(self, name: str, params: Mapping[str, Any] | None = None, /, **context: Any) -> T:
        """Build ``name`` from validated ``params`` plus ``context`` keywords.

        ``context`` carries what the caller supplies at build time (for example the agent's
        persona and seed for a policy); ``params`` come from the user's config.
        """
        model = self.check_params(name, params)
        values = model.model_dump()
        return self.get(name).factory(**values, **context)
