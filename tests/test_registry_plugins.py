"""Third-party plug-ins through entry points: each one loaded (or failing) on its own, a name
clash with a built-in said out loud, and a plug-in that breaks its extension point's contract
named where it is built.

Each test writes real throwaway distributions (a ``NAME.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` beside the plug-in's module) into ``tmp_path`` and puts them on ``sys.path``;
the registries read them through :mod:`importlib.metadata` like installed packages.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from pydantic import BaseModel, ConfigDict

from friendsim.agents.policies import POLICIES
from friendsim.analysis.sentiment import SENTIMENT, SentimentModel
from friendsim.coach.base import Coach
from friendsim.coach.kinds import COACHES
from friendsim.llm.base import LLM
from friendsim.llm.errors import ProviderConfigError
from friendsim.llm.registry import PROVIDERS, create_llm, providers
from friendsim.moderation.base import Moderator
from friendsim.moderation.kinds import MODERATORS
from friendsim.platform.feeds import RANKERS, FeedRanker, FullVisibilityRanker, make_ranker
from friendsim.registry import Registry, RegistryError
from friendsim.runtime.interventions import INTERVENTIONS, Intervention
from friendsim.testing import ScriptedLLM, ScriptedPolicy
from friendsim.vocabulary import Policy

PLUGINS = """
class Ranker:
    name = "good"
    def __init__(self, *, depth=3):
        self.depth = depth
    async def rank(self, view, query):
        return []

def good():
    return Ranker()

class NoRank:
    name = "norank"

def echo(model, /, **options):
    from friendsim.testing import ScriptedLLM
    return ScriptedLLM(default="x", model=model or "echo", provider="echo")

def not_an_llm(model, /, **options):
    return object()
"""


def _dist(root: Path, dist: str, entry_points: str, modules: dict[str, str]) -> Path:
    """A folder holding distribution ``dist`` 0.1 with these entry points and modules."""
    site = root / f"site-{dist}"
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    for module, code in modules.items():
        (site / f"{module}.py").write_text(code, encoding="utf-8")
    return site


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Callable[[Registry[Any]], None]:
    """Make a module-level registry list its entry points again (it lists them once per
    process); everything is put back after the test."""

    def reset(registry: Registry[Any]) -> None:
        monkeypatch.setattr(registry, "_entries", dict(registry._entries))
        monkeypatch.setattr(registry, "_origins", dict(registry._origins))
        monkeypatch.setattr(registry, "_entry_points", None)
        monkeypatch.setattr(registry, "_broken", {})
        monkeypatch.setattr(registry, "_scan_error", None)

    return reset


def _warnings(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e.get("log_level") == "warning"]


# -- 1. one broken entry point does not disable the others -------------------------------------


@pytest.mark.parametrize("broken_first", [True, False], ids=["broken-first", "broken-last"])
def test_a_broken_entry_point_breaks_only_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken_first: bool
) -> None:
    group = "friendsim.test-plugins-isolation"
    good = _dist(
        tmp_path, "fs_good", f"[{group}]\ngood = fs_iso_good:good\n", {"fs_iso_good": PLUGINS}
    )
    broken = _dist(
        tmp_path,
        "fs_broken",
        f"[{group}]\nmissing-mod = fs_iso_no_such_module:thing\nnotcallable = fs_iso_bad:VALUE\n",
        {"fs_iso_bad": "VALUE = 42\n"},
    )
    for site in (good, broken) if broken_first else (broken, good):
        monkeypatch.syspath_prepend(str(site))  # the last prepended comes first on sys.path
    monkeypatch.delitem(sys.modules, "fs_iso_good", raising=False)
    reg: Registry[Any] = Registry("feed ranker", group=group)

    assert reg.names() == ("good", "missing-mod", "notcallable")  # listed, nothing imported
    assert "fs_iso_good" not in sys.modules and "missing-mod" in reg
    for _ in range(2):  # the same answers every time, in any order
        assert reg.get("good").factory().name == "good"
        with pytest.raises(RegistryError) as err:
            reg.get("missing-mod")
        message = str(err.value)
        assert "feed ranker 'missing-mod'" in message
        assert "entry point 'missing-mod = fs_iso_no_such_module:thing'" in message
        assert "distribution fs_broken 0.1" in message
        assert "failed to load: ModuleNotFoundError" in message
        with pytest.raises(RegistryError, match=r"'notcallable' .*fs_broken.* nor a callable"):
            reg.get("notcallable")
    assert reg.names() == ("good", "missing-mod", "notcallable")


# -- 2. an entry point named like a built-in ---------------------------------------------------


def test_an_entry_point_reusing_a_builtin_name_is_a_warning_and_the_builtin_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: Callable[[Registry[Any]], None]
) -> None:
    site = _dist(
        tmp_path,
        "fs_clash",
        "[friendsim.rankers]\nfull = fs_clash_mod:good\n",
        {"fs_clash_mod": "raise AssertionError('the clashing plug-in was imported')\n"},
    )
    monkeypatch.syspath_prepend(str(site))
    fresh(RANKERS)
    with structlog.testing.capture_logs() as logs:
        assert RANKERS.get("full").factory is FullVisibilityRanker
        assert isinstance(make_ranker("full"), FullVisibilityRanker)
        assert "full" in RANKERS.names()
    (warning,) = _warnings(logs)  # once per registry, however often the name is looked up
    assert warning["event"] == "plugin_entry_point_ignored"
    assert warning["registry"] == "feed ranker" and warning["name"] == "full"
    assert "entry point 'full = fs_clash_mod:good'" in warning["entry_point"]
    assert "distribution fs_clash 0.1" in warning["entry_point"]
    assert "FullVisibilityRanker" in warning["reason"] and "wins" in warning["reason"]


def test_the_clash_warning_goes_to_stderr_where_nothing_configured_logging(tmp_path: Path) -> None:
    """``friendsim analyze --json`` configures no logging: its stdout must stay its output."""
    site = _dist(tmp_path, "fs_clash2", "[friendsim.sentiment]\nvader = fs_clash2_mod:X\n", {})
    code = (
        "from friendsim.analysis.sentiment import get_sentiment; print(get_sentiment('vader').name)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
        timeout=120,
        check=True,
    )
    assert proc.stdout == "vader\n"
    assert "plugin_entry_point_ignored" in proc.stderr and "fs_clash2 0.1" in proc.stderr


# -- 3. plug-ins that do not follow their protocol ---------------------------------------------


def test_register_refuses_what_is_not_a_factory() -> None:
    reg: Registry[Any] = Registry("widget", group="friendsim.test-widgets")
    with pytest.raises(RegistryError, match=r"widget 'x': its factory 42 is not callable"):
        reg.register("x", 42)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match=r"widget 'y': its params .* not a pydantic model"):
        reg.register("y", lambda: 1, params=dict)  # type: ignore[arg-type]
    assert reg.names() == ()


def test_a_factory_with_the_wrong_signature_is_named_with_the_call() -> None:
    reg: Registry[Policy] = Registry("agent policy", group="friendsim.test-x", protocol=Policy)
    reg.register("x", ScriptedPolicy)  # ScriptedPolicy takes no ``context``
    with pytest.raises(RegistryError) as err:
        reg.create("x", None, context=object())
    message = str(err.value)
    assert message.startswith("agent policy 'x' (registered as friendsim.testing.ScriptedPolicy)")
    assert "factory(context=<object>)" in message and "'context'" in message

    def raises_inside(*, context: object) -> Policy:
        raise TypeError("a bug inside the factory")

    reg.register("inside", raises_inside)  # a TypeError from the body stays the plug-in's own
    with pytest.raises(TypeError, match="a bug inside the factory"):
        reg.create("inside", None, context=object())


def test_params_named_like_a_build_argument_are_named() -> None:
    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        context: int = 1

    reg: Registry[Any] = Registry("agent policy", group="friendsim.test-x")
    reg.register("p", lambda **kw: kw, params=Params)
    with pytest.raises(RegistryError, match=r"'p' .*field\(s\) context, which friendsim passes"):
        reg.create("p", None, context=object())


def test_every_extension_point_declares_its_protocol() -> None:
    assert RANKERS.protocol is FeedRanker and POLICIES.protocol is Policy
    assert COACHES.protocol is Coach and MODERATORS.protocol is Moderator
    assert INTERVENTIONS.protocol is Intervention and SENTIMENT.protocol is SentimentModel
    assert PROVIDERS.protocol is LLM
    for name in ("full", "chrono", "popularity", "interest"):  # the built-ins pass the check
        assert make_ranker(name).name
    for name in SENTIMENT.names():
        assert isinstance(SENTIMENT.create(name).score("fine"), float)


def test_an_object_without_the_protocols_methods_is_named_where_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: Callable[[Registry[Any]], None]
) -> None:
    site = _dist(
        tmp_path,
        "fs_contract",
        "[friendsim.rankers]\nnorank = fs_contract_mod:NoRank\n"
        "[friendsim.providers]\nnotllm = fs_contract_mod:not_an_llm\n",
        {"fs_contract_mod": PLUGINS},
    )
    monkeypatch.syspath_prepend(str(site))
    fresh(RANKERS)
    fresh(PROVIDERS)
    with pytest.raises(RegistryError) as err:
        make_ranker("norank")
    assert str(err.value) == (
        "feed ranker 'norank' (entry point 'norank = fs_contract_mod:NoRank' in "
        "friendsim.rankers, distribution fs_contract 0.1): the object its factory returned "
        "(NoRank) has no method rank() required by FeedRanker"
    )
    with pytest.raises(ProviderConfigError) as perr:
        create_llm("notllm:m")
    assert "LLM provider 'notllm' (entry point 'notllm = fs_contract_mod:not_an_llm'" in str(
        perr.value
    )
    assert "has no methods complete(), aclose() required by LLM" in str(perr.value)


# -- 4. provider names a spec can name ---------------------------------------------------------


def test_provider_names_are_lowercase_without_a_colon() -> None:
    before = providers()
    for name in ("MyProv", "a:b"):
        with pytest.raises(RegistryError, match=r"lowercase without ':'"):
            PROVIDERS.register(name, lambda model, **o: ScriptedLLM(default="x"))
    assert providers() == before


def test_a_provider_entry_point_no_spec_can_name_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh: Callable[[Registry[Any]], None]
) -> None:
    site = _dist(
        tmp_path,
        "fs_upper",
        "[friendsim.providers]\nUpper = fs_upper_mod:echo\nechoplug = fs_upper_mod:echo\n",
        {"fs_upper_mod": PLUGINS},
    )
    monkeypatch.syspath_prepend(str(site))
    fresh(PROVIDERS)
    with structlog.testing.capture_logs() as logs:
        assert "echoplug" in providers() and "Upper" not in providers()
    (warning,) = _warnings(logs)
    assert warning["event"] == "plugin_entry_point_refused"
    assert "entry point 'Upper = fs_upper_mod:echo'" in warning["error"]
    assert "distribution fs_upper 0.1" in warning["error"]
    with pytest.raises(RegistryError, match=r"LLM provider 'Upper' \(entry point .*lowercase"):
        PROVIDERS.get("Upper")
    assert create_llm("echoplug:m").model == "echo:m"  # the well-named one works


def test_friendsim_run_names_a_plugin_that_breaks_its_protocol_exit_2(tmp_path: Path) -> None:
    """A ranker plug-in without ``rank()`` made ``friendsim run`` print a traceback and exit 1;
    the command names the plug-in in one line and exits 2, as for any bad input."""
    site = _dist(
        tmp_path, "fs_norank", "[friendsim.rankers]\nnorank = fs_norank_mod:NoRank\n",
        {"fs_norank_mod": "class NoRank:\n    name = 'norank'\n"},
    )  # fmt: skip
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[experiment]\nname = "n"\nseed = 1\nrounds = 2\nn_actions = 1\n'
        '[agents]\ncount = 3\npolicy = "baseline"\n[feed]\nranker = "norank"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(tmp_path / "r"),
         "--quiet"],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)},
        timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("friendsim run: feed ranker 'norank'")
    assert "has no method rank() required by FeedRanker" in proc.stderr
