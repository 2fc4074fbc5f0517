"""Lazy re-exports for package ``__init__`` modules (PEP 562).

A package lists its public names and the submodule that defines each; a name is imported on first
attribute access. So ``import friendsim.agents.cli_personas`` (what the command line does to add
its sub-command) loads that one module and not everything the package re-exports, and
``friendsim --help`` starts without numpy, networkx, the SDKs or pydantic models.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``exports`` (public name -> absolute module name).

    The value is cached in the package's namespace after the first access; unknown names raise
    :class:`AttributeError` like any module attribute.
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        vars(importlib.import_module(package))[name] = value
        return value

    return __getattr__
