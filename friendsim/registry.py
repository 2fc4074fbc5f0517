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
parameters). The group's entry points are listed (from the installed packages' metadata, nothing
imported) the first time the registry is asked for a name; an entry point's object is imported
only when its own name is looked up. So importing friendsim stays cheap and a broken third-party
package cannot break a run that does not use it: a plug-in that fails to load is a
:class:`RegistryError` naming its entry point and distribution each time *its* name is looked up,
and every other name keeps working. An entry point whose name is already registered (a built-in)
is ignored with a warning naming it: the registered entry wins.

``create(name, params)`` validates ``params`` against the entry's pydantic model first, so a bad
parameter is a clear error naming the entry and the key. A factory that cannot be called with the
registry's arguments, or that returns an object without the methods of the registry's
``protocol``, is a :class:`RegistryError` naming the plug-in, raised where it is built rather than
deep inside a run.

This module imports nothing from friendsim: it sits at the bottom of the layers.
"""

from __future__ import annotations

import inspect
import reprlib
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Generic, NoReturn, TypeVar

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError

T = TypeVar("T")

log = structlog.get_logger(__name__)


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
    """Name -> :class:`Plugin` for one extension point (see the module docstring).

    ``protocol``: the class (usually a :class:`typing.Protocol`) the built objects follow; each
    public method it declares must be present on what a factory returns. ``name_problem``: says
    why a name cannot be used (``None`` when it can); such a name is refused at
    :meth:`register` and its entry point is refused when the group is listed.
    """

    def __init__(
        self,
        kind: str,
        *,
        group: str,
        protocol: type | None = None,
        name_problem: Callable[[str], str | None] | None = None,
    ) -> None:
        self.kind = kind
        self.group = group
        self.protocol = protocol
        self.name_problem = name_problem
        self._required = _required_methods(protocol) if protocol is not None else ()
        self._entries: dict[str, Plugin[T]] = {}
        self._origins: dict[str, str] = {}  # name -> where its entry came from, for messages
        self._entry_points: dict[str, metadata.EntryPoint] | None = None  # None: not listed yet
        self._broken: dict[str, tuple[str, BaseException | None]] = {}  # name -> error, cause
        self._scan_error: str | None = None

    def register(
        self,
        name: str,
        factory: Callable[..., T],
        *,
        params: type[BaseModel] = NoParams,
        summary: str = "",
        replace: bool = False,
    ) -> None:
        """Add ``name``; registering a taken name needs ``replace=True``.

        A name :attr:`name_problem` refuses, a factory that is not callable and ``params`` that
        is not a pydantic model class are a :class:`RegistryError` here, not later in a run.
        """
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} name must be a non-empty string, got {name!r}")
        problem = self.name_problem(name) if self.name_problem is not None else None
        if problem is not None:
            raise RegistryError(f"{self.kind} name {name!r} is refused: {problem}")
        if name in self._entries and not replace:
            raise RegistryError(f"{self.kind} {name!r} is already registered")
        plugin: Plugin[T] = Plugin(factory=factory, params=params, summary=summary)
        problem = _plugin_problem(plugin)
        if problem is not None:
            raise RegistryError(f"{self.kind} {name!r}: {problem}")
        self._entries[name] = plugin
        self._origins[name] = "registered as " + _qualified(factory)

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plug-ins that replace a built-in)."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def _listed(self) -> dict[str, metadata.EntryPoint]:
        """The group's usable entry points by name, listed once from the installed packages'
        metadata (nothing imported). A name already registered, a second entry point of one
        name and a name :attr:`name_problem` refuses are left out, each with a warning."""
        if self._entry_points is not None:
            return self._entry_points
        found: dict[str, metadata.EntryPoint] = {}
        self._entry_points = found
        try:
            eps = _entry_points(self.group)
        except Exception as exc:  # unreadable metadata: only lookups of unknown names fail
            self._scan_error = f"{type(exc).__name__}: {exc}"
            _warn("plugin_scan_failed", registry=self.kind, group=self.group, error=repr(exc))
            return found
        for ep in eps:
            origin = _entry_point_origin(ep)
            if ep.name in self._entries:
                _warn(
                    "plugin_entry_point_ignored",
                    registry=self.kind,
                    name=ep.name,
                    entry_point=origin,
                    reason=f"the name is taken by a built-in {self.kind} "
                    f"({self._origins.get(ep.name, 'registered')}), which wins: this entry "
                    "point is never loaded",
                )
                continue
            if ep.name in found or ep.name in self._broken:
                _warn(
                    "plugin_entry_point_ignored",
                    registry=self.kind,
                    name=ep.name,
                    entry_point=origin,
                    reason="another entry point of the same name comes first on sys.path"
                    + (f" ({_entry_point_origin(found[ep.name])})" if ep.name in found else ""),
                )
                continue
            problem = self.name_problem(ep.name) if self.name_problem is not None else None
            if problem is not None:
                message = f"{self.kind} {ep.name!r} ({origin}) is refused: {problem}"
                self._broken[ep.name] = (message, None)
                _warn("plugin_entry_point_refused", registry=self.kind, error=message)
                continue
            found[ep.name] = ep
        return found

    def _fail(self, name: str, message: str, cause: BaseException | None = None) -> NoReturn:
        self._broken[name] = (message, cause)
        raise RegistryError(message) from cause

    def _load(self, ep: metadata.EntryPoint) -> Plugin[T]:
        """Import entry point ``ep``'s object; a failure is kept and raised on every lookup."""
        origin = _entry_point_origin(ep)
        where = f"{self.kind} {ep.name!r} ({origin})"
        try:
            loaded = ep.load()
        except Exception as exc:
            self._fail(ep.name, f"{where} failed to load: {type(exc).__name__}: {exc}", exc)
        plugin: Plugin[T]
        if isinstance(loaded, Plugin):
            plugin = loaded
        elif callable(loaded):
            plugin = Plugin(factory=loaded)
        else:
            self._fail(
                ep.name,
                f"{where} is neither a friendsim.registry.Plugin nor a callable factory "
                f"(it is {reprlib.repr(loaded)})",
            )
        problem = _plugin_problem(plugin)
        if problem is not None:
            self._fail(ep.name, f"{where}: {problem}")
        self._entries[ep.name] = plugin
        self._origins[ep.name] = origin
        return plugin

    def names(self) -> tuple[str, ...]:
        """Every known name, entry points included (not imported: one that fails to load is
        listed, and looking it up gives its error), sorted."""
        return tuple(sorted({*self._entries, *self._listed()}))

    def __contains__(self, name: object) -> bool:
        listed = self._listed()
        return name in self._entries or name in listed

    def get(self, name: str) -> Plugin[T]:
        """The entry ``name``, importing its entry point the first time; :class:`RegistryError`
        naming the entry point when it cannot be used, listing the known names when ``name`` is
        unknown."""
        listed = self._listed()  # first: warns of entry points a registered name shadows
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        broken = self._broken.get(name)
        if broken is not None:
            raise RegistryError(broken[0]) from broken[1]
        ep = listed.get(name)
        if ep is not None:
            return self._load(ep)
        unreadable = (
            f"; the {self.group!r} entry points could not be read: {self._scan_error}"
            if self._scan_error
            else ""
        )
        raise RegistryError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self.names()) or '(none)'} "
            f"(others can be added through the {self.group!r} entry-point group){unreadable}"
        )

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
        """Build ``name`` from validated ``params`` plus ``context`` keywords (see :meth:`build`).

        ``context`` carries what the caller supplies at build time (for example the agent's
        persona and seed for a policy); ``params`` come from the user's config.
        """
        values = self.check_params(name, params).model_dump()
        clash = sorted(set(values) & set(context))
        if clash:
            raise RegistryError(
                f"{self._named(name)}: its params model has field(s) {', '.join(clash)}, which "
                f"friendsim passes itself when it builds a {self.kind}"
            )
        return self.build(name, **values, **context)

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> T:
        """``name``'s factory called with exactly ``args`` and ``kwargs`` (no params validation:
        that is :meth:`create`), its result checked against :attr:`protocol`.

        :class:`RegistryError` naming the plug-in when the factory's signature does not accept
        these arguments, or when the object it returns lacks a method of the protocol. Errors
        raised inside the factory (a ``TypeError`` too) propagate unchanged.
        """
        factory = self.get(name).factory
        try:
            built = factory(*args, **kwargs)
        except TypeError as exc:
            problem = _binding_problem(factory, args, kwargs)
            if problem is None:
                raise
            raise RegistryError(
                f"{self._named(name)}: its factory cannot be called as "
                f"{_call_text(args, kwargs)}: {problem}"
            ) from exc
        missing = [m for m in self._required if not callable(getattr(built, m, None))]
        if missing and self.protocol is not None:
            methods = ", ".join(f"{m}()" for m in missing)
            raise RegistryError(
                f"{self._named(name)}: the object its factory returned "
                f"({type(built).__qualname__}) has no method{'s' if len(missing) > 1 else ''} "
                f"{methods} required by {self.protocol.__name__}"
            )
        return built

    def _named(self, name: str) -> str:
        return f"{self.kind} {name!r} ({self._origins.get(name, 'registered')})"


_SCANNED: tuple[tuple[str, ...], Any] | None = None
"""Every installed entry point, listed once for ``sys.path`` as it was (a run's registries share
one scan of the packages' metadata: each scan costs milliseconds)."""


def _entry_points(group: str) -> metadata.EntryPoints:
    """The entry points of ``group``, from one scan of all groups per value of ``sys.path``."""
    global _SCANNED
    key = tuple(sys.path)
    if _SCANNED is None or _SCANNED[0] != key:
        _SCANNED = (key, metadata.entry_points())
    found: metadata.EntryPoints = _SCANNED[1].select(group=group)
    return found


def _warn(event: str, **fields: Any) -> None:
    """A warning through the application's structlog configuration, or to stderr while it made
    none (structlog's default prints to stdout, where commands write their output)."""
    logger = (
        log
        if structlog.is_configured()
        else structlog.wrap_logger(structlog.PrintLogger(sys.stderr))
    )
    logger.warning(event, **fields)


def _required_methods(protocol: type) -> tuple[str, ...]:
    """The public methods ``protocol`` and its bases declare (properties and data attributes
    are not checked: only methods are required)."""
    found: dict[str, None] = {}
    for klass in reversed(protocol.__mro__):
        if klass in (object, typing.Protocol, typing.Generic):
            continue
        for attr, value in vars(klass).items():
            method = inspect.isfunction(value) or isinstance(value, staticmethod | classmethod)
            if method and not attr.startswith("_"):
                found[attr] = None
    return tuple(found)


def _plugin_problem(plugin: Plugin[Any]) -> str | None:
    if not callable(plugin.factory):
        return f"its factory {reprlib.repr(plugin.factory)} is not callable"
    params = plugin.params
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        return f"its params {reprlib.repr(params)} is not a pydantic model class"
    return None


def _qualified(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None) or type(obj).__qualname__
    return f"{module}.{qualname}" if module else qualname


def _entry_point_origin(ep: metadata.EntryPoint) -> str:
    """``entry point 'NAME = VALUE' in GROUP, distribution DIST VERSION``, for messages."""
    try:
        dist = getattr(ep, "dist", None)
        source = f", distribution {dist.name} {dist.version}" if dist is not None else ""
    except Exception:  # unreadable metadata must not break the listing of the other plug-ins
        source = ""
    return f"entry point '{ep.name} = {ep.value}' in {ep.group}{source}"


def _binding_problem(
    factory: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> str | None:
    """Why ``factory``'s signature does not accept these arguments; None when it does (or when
    it has no signature to read)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    return None


def _call_text(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str:
    def shown(value: Any) -> str:
        simple = (str, int, float, bool, type(None), list, tuple, dict)
        return reprlib.repr(value) if isinstance(value, simple) else f"<{type(value).__name__}>"

    parts = [shown(a) for a in args] + [f"{k}={shown(v)}" for k, v in kwargs.items()]
    return f"factory({', '.join(parts)})"
