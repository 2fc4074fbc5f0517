"""What the Python API and ``friendsim.testing`` do with the inputs users give them: a config
object remembers the file it came from, arguments of the wrong type are named before anything is
written, a damaged run is a ``RunError`` naming its file, and every fake of
``friendsim.testing`` runs a real small experiment through its registry by name."""

from __future__ import annotations

import asyncio
import gc
import json
import re
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from friendsim import api, testing
from friendsim.agents.generator import generate_personas
from friendsim.runtime.config import ConfigError
from friendsim.runtime.engine import RunListener

# --- helpers ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A completed 4-agent, 2-round run (read-only for the tests that use it)."""
    out = tmp_path_factory.mktemp("small") / "run"
    testing.run_small(out)
    return out


@pytest.fixture
def register() -> Iterator[Callable[..., None]]:
    """``register(REGISTRY, name, factory)``, undone when the test ends."""
    done: list[tuple[Any, str]] = []

    def add(registry: Any, name: str, factory: Any) -> None:
        registry.register(name, factory, replace=True)
        done.append((registry, name))

    yield add
    for registry, name in done:
        registry.unregister(name)


def write_experiment(folder: Path, *, personas: str = "p.jsonl", count: int = 4) -> Path:
    """``folder/exp.toml`` naming the persona file ``personas`` relative to it (written too)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [p.model_dump_json() for p in generate_personas(count, seed=3)]
    (folder / personas).write_text("\n".join(lines) + "\n")
    toml = folder / "exp.toml"
    toml.write_text(
        '[experiment]\nname = "rel"\nseed = 1\nrounds = 2\nn_actions = 2\n\n'
        f'[agents]\ncount = {count}\npersonas = "{personas}"\npolicy = "baseline"\n'
    )
    return toml


# --- 1. a config object remembers its file ---------------------------------------------------


def test_run_resolves_a_loaded_configs_paths_against_the_file_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = write_experiment(tmp_path / "sub")
    monkeypatch.chdir(tmp_path)  # p.jsonl is not in the current directory, but beside exp.toml
    cfg = api.load_config("sub/exp.toml")
    run = api.run(cfg, "out")
    assert run.status == "completed" and run.manifest.config_file == "sub/exp.toml"
    assert len(run.manifest.lambdas) == 4

    changed = api.load_config(toml, overrides={"experiment.rounds": 1})
    assert api.run(changed, tmp_path / "out2").manifest.windows == 1

    # an explicit config_path still wins: here it points where there is no persona file
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ConfigError, match=r"elsewhere/x\.toml: \[agents\]\.personas"):
        api.run(cfg, tmp_path / "out3", config_path=tmp_path / "elsewhere" / "x.toml")
    assert not (tmp_path / "out3").exists()


def test_a_config_from_data_resolves_against_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_experiment(tmp_path)
    cfg = api.parse_config({"agents": {"count": 4, "personas": "p.jsonl", "policy": "baseline"}})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    with pytest.raises(ConfigError, match=r"persona file not found: .*elsewhere/p\.jsonl"):
        api.run(cfg, tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    assert api.run(cfg, tmp_path / "out", config_path=None).status == "completed"
    with pytest.raises(TypeError, match="data must be a mapping"):
        api.parse_config([("agents", {})])  # type: ignore[arg-type]


def test_the_remembered_file_goes_with_its_config(tmp_path: Path) -> None:
    toml = write_experiment(tmp_path)
    cfg = api.load_config(toml)
    key = id(cfg)
    assert api._config_source(cfg) == toml
    assert api._config_source(cfg.model_copy()) is None
    del cfg
    gc.collect()
    assert key not in api._SOURCES


def test_overrides_are_checked_against_the_files_like_the_file_is(tmp_path: Path) -> None:
    toml = write_experiment(tmp_path)
    with pytest.raises(ConfigError, match=r"\[agents\]\.personas: persona file not found"):
        api.load_config(toml, overrides={"agents.personas": "missing.jsonl"})


# --- 2. arguments of the wrong type ----------------------------------------------------------

BAD_RUN_ARGS: list[tuple[dict[str, Any], str]] = [
    ({"config": None}, r"config must be a config object or the path of a TOML file, got None"),
    ({"config": {"experiment": {"seed": 1}}}, r"got dict; pass api\.load_config\(path\), or api"),
    ({"config": 42}, r"config must be .* got int"),
    ({"out_dir": None}, r"out_dir must be a path \(str or os\.PathLike\), got None"),
    ({"config_path": 5}, r"config_path must be a path"),
    ({"listener": object()}, r"listener must be a friendsim\.runtime\.engine\.RunListener"),
    ({"llm_factory": "scripted"}, r"llm_factory must be a callable"),
    ({"env": ["KEY=1"]}, r"env must be a mapping of str to str, got list"),
    ({"env": {"KEY": 1}}, r"env\['KEY'\] is int"),
]


@pytest.mark.parametrize(("change", "message"), BAD_RUN_ARGS)
def test_run_names_an_argument_of_the_wrong_type_before_writing_anything(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    out = tmp_path / "out"
    args: dict[str, Any] = {"config": testing.small_config(), "out_dir": out, **change}
    with pytest.raises(TypeError, match=message):
        api.run(args.pop("config"), args.pop("out_dir"), **args)
    assert not out.exists()


async def test_run_async_names_its_stop_argument(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"stop must be an asyncio\.Event, got bool"):
        await api.run_async(testing.small_config(), tmp_path / "out", stop=True)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_a_listener_with_every_hook_is_enough(tmp_path: Path) -> None:
    class Counting:  # not a RunListener subclass: its methods are what counts
        def __init__(self) -> None:
            self.ended: list[int] = []

        def run_started(self, *, windows: int, agents: int) -> None:
            pass

        def wake_applied(self, tally: Any) -> None:
            pass

        def window_ended(self, tally: Any) -> None:
            self.ended.append(tally.window)

    listener = Counting()
    api.run(testing.small_config(), tmp_path / "out", listener=listener)  # type: ignore[arg-type]
    assert listener.ended == [1, 2]


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({1: 2}, TypeError, r"overrides: every key must be a dotted key \(str\).* got 1"),
        ([("agents.count", 3)], TypeError, r"overrides must be a mapping .* got list"),
        ("agents.count=3", TypeError, r"overrides must be a mapping .* got str"),
        ({"": 3}, api.RunError, r"overrides: a key is empty"),
    ],
)
def test_load_config_names_overrides_of_the_wrong_type(
    tmp_path: Path, overrides: Any, error: type[Exception], message: str
) -> None:
    toml = write_experiment(tmp_path)
    with pytest.raises(error, match=message):
        api.load_config(toml, overrides=overrides)
    with pytest.raises(TypeError, match=r"path must be a path \(str or os\.PathLike\), got int"):
        api.load_config(3)  # type: ignore[arg-type]


# --- 3. small_config's sections --------------------------------------------------------------


def test_small_config_merges_tables_and_replaces_arrays_of_tables() -> None:
    cfg = testing.small_config(
        experiment={"rounds": 3},
        interventions=[{"kind": "broadcast", "window": 1, "text": "hi"}],
        surveys=[{"windows": [1]}],
    )
    assert (cfg.experiment.rounds, cfg.experiment.seed, cfg.experiment.n_actions) == (3, 1, 2)
    assert [i.kind for i in cfg.interventions] == ["broadcast"]
    assert cfg.interventions[0].params == {"text": "hi"}
    assert len(cfg.surveys) == 1
    assert testing.small_config(moderation={"enabled": True}).moderation.enabled


def test_small_config_names_a_section_that_is_neither_table_nor_array() -> None:
    with pytest.raises(TypeError, match=r"small_config\(experiment=\.\.\.\).* got int"):
        testing.small_config(experiment=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"small_config\(agents=\.\.\.\).* got str"):
        testing.small_config(agents="baseline")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"<small_config>: \[bogus\]"):
        testing.small_config(bogus={"x": 1})


# --- 4. a fake beside each extension point, run through its registry by name -----------------


def test_fake_sentiment_scores_a_real_run(tmp_path: Path, register: Callable[..., None]) -> None:
    from friendsim.analysis.sentiment import SENTIMENT, get_sentiment

    fake = testing.FakeSentiment({"never written": -1.0}, default=1.0)
    register(SENTIMENT, "fake-sentiment-test", testing.factory(fake))
    get_sentiment.cache_clear()
    try:
        run = api.run(
            testing.small_config(rewards={"sentiment": "fake-sentiment-test"}), tmp_path / "r"
        )
        written = {getattr(e, "text", None) for e in run.events()}  # posts, comments, DMs
        assert fake.texts and set(fake.texts) <= written
        emo = run.rewards().column("EMO")
    finally:
        get_sentiment.cache_clear()
    baseline = testing.run_small(tmp_path / "b")
    assert baseline.run_dir.exists()
    assert emo != api.open_run(tmp_path / "b").rewards().column("EMO")
    with pytest.raises(ValueError, match=r"scores\['x'\] must be a number in \[-1, 1\], got 2"):
        testing.FakeSentiment({"x": 2})
    with pytest.raises(ValueError, match=r"default must be a number in \[-1, 1\], got nan"):
        testing.FakeSentiment(default=float("nan"))


def test_fake_persona_source_gives_the_runs_personas(
    tmp_path: Path, register: Callable[..., None]
) -> None:
    from friendsim.agents.sources import PERSONA_SOURCES

    personas = generate_personas(5, seed=42)
    source = testing.FakePersonaSource(personas)
    register(PERSONA_SOURCES, "fake-personas-test", source)
    cfg = testing.small_config(agents={"personas": "fake-personas-test", "count": 5})
    run = api.run(cfg, tmp_path / "r")
    assert run.status == "completed"
    assert source.calls == [{"count": 5, "seed": 1, "theme": cfg.experiment.theme}]
    names = {e.actor: e.name for e in run.events("agent_registered")}
    assert names == {p.id: p.name for p in personas}

    too_many = testing.small_config(agents={"personas": "fake-personas-test", "count": 6})
    with pytest.raises(ConfigError, match="made 5 personas, 6 asked"):
        api.run(too_many, tmp_path / "r2")
    with pytest.raises(ValueError, match=r"personas\[1\]: the id 'a00' is taken"):
        testing.FakePersonaSource([personas[0], personas[0].model_dump()])
    with pytest.raises(TypeError, match=r"personas\[0\] must be a Persona"):
        testing.FakePersonaSource(["a00"])


def test_fake_intervention_is_applied_at_its_window(
    tmp_path: Path, register: Callable[..., None]
) -> None:
    from friendsim.runtime.interventions import INTERVENTIONS

    fake = testing.FakeIntervention(broadcast="hello everyone")
    register(INTERVENTIONS, "fake-intervention-test", testing.factory(fake))
    cfg = testing.small_config(interventions=[{"kind": "fake-intervention-test", "window": 2}])
    run = api.run(cfg, tmp_path / "r")
    assert run.status == "completed" and fake.windows == [2]
    applied = list(run.events("intervention_applied"))
    assert [(e.kind, e.window) for e in applied] == [("intervention_applied", 2)]
    sent = list(run.events("broadcast_sent"))
    assert [(e.window, e.text, e.sender) for e in sent] == [(2, "hello everyone", "platform")]
    with pytest.raises(ValueError, match="broadcast must be a non-blank string"):
        testing.FakeIntervention(broadcast=" ")


def test_scripted_policy_factory_fills_the_runs_actions(
    tmp_path: Path, register: Callable[..., None]
) -> None:
    from friendsim.agents.policies import POLICIES

    make = testing.ScriptedPolicy.factory(text="scripted hello", topic="tests")
    register(POLICIES, "scripted-policy-test", make)
    run = api.run(testing.small_config(agents={"policy": "scripted-policy-test"}), tmp_path / "r")
    counts = run.event_counts()
    assert "action_failed" not in counts  # two posts per wake, as n_actions = 2 asks
    assert counts["post_created"] == 4 * 2 * 2
    assert {e.text for e in run.events("post_created")} == {"scripted hello"}
    assert sorted(make.policies) == ["a00", "a01", "a02", "a03"]
    assert all(len(p.observations) == 2 for p in make.policies.values())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"text": ""}, ValueError, "text must not be blank"),
        ({"text": "  "}, ValueError, "text must not be blank"),
        ({"text": None}, TypeError, "text must be a string"),
        ({"topic": " "}, ValueError, "topic must not be blank"),
        ({"vote": 2}, ValueError, "vote must be -1, 0 or 1"),
        ({"n_actions": 0}, ValueError, "n_actions must be an int >= 1"),
    ],
)
def test_scripted_policy_refuses_what_every_action_would_fail(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        testing.ScriptedPolicy(**kwargs)
    if "n_actions" not in kwargs:
        with pytest.raises(error, match=message):
            testing.ScriptedPolicy.factory(**kwargs)


def test_factory_registers_the_existing_fakes_as_they_are(
    tmp_path: Path, register: Callable[..., None]
) -> None:
    from friendsim.coach.kinds import COACHES
    from friendsim.llm.registry import PROVIDERS
    from friendsim.moderation.kinds import MODERATORS
    from friendsim.platform.feeds import RANKERS
    from friendsim.vocabulary import Tip

    tip = Tip(
        action="POST",
        target=None,
        topic="climate change",
        invite_mention=False,
        tone="neutral",
        text="Share what you think.",
    )
    coach = testing.FakeCoach((tip,))
    ranker = testing.StaticRanker([1, 2, 3])
    moderator = testing.FakeModerator()
    llm = testing.ScriptedLLM(testing.plausible_responder(0))
    register(COACHES, "fake-coach-test", testing.factory(coach))
    register(RANKERS, "fake-ranker-test", testing.factory(ranker))
    register(MODERATORS, "fake-moderator-test", testing.factory(moderator))
    register(PROVIDERS, "fakellm", testing.factory(llm))
    cfg = testing.small_config(
        agents={"policy": "llm", "count": 3},
        llm={"provider": "fakellm:any", "cache": "off"},
        coach={"kind": "fake-coach-test"},
        feed={"ranker": "fake-ranker-test"},
        moderation={"enabled": True, "kind": "fake-moderator-test"},
    )
    run = api.run(cfg, tmp_path / "r")
    assert run.status == "completed"
    assert llm.calls and coach.contexts and moderator.seen
    guidance = list(run.events("guidance_issued"))
    assert guidance and all(g.tips == (tip,) for g in guidance)
    served = [e for e in run.events("feed_served") if e.post_ids]
    assert served and all(set(e.post_ids) <= {1, 2, 3} for e in served)


# --- 5. smaller ones --------------------------------------------------------------------------


async def test_run_small_works_inside_a_running_event_loop(tmp_path: Path) -> None:
    result = testing.run_small(tmp_path / "r")  # an async test: a loop is running here
    assert result.manifest.status == "completed"
    with pytest.raises(TypeError, match=r"config must be a config object .* got dict"):
        testing.run_small(tmp_path / "r2", {"agents": {"count": 2}})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("window", "error"), [(0, ValueError), (-1, ValueError), ("1", TypeError), (True, TypeError)]
)
def test_stop_after_window_refuses_a_window_that_never_comes(
    window: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match="window must be"):
        testing.stop_after_window(window)


def test_stop_after_window_stops_a_run_through_the_api(tmp_path: Path) -> None:
    stop, listener = testing.stop_after_window(1)
    assert isinstance(listener, RunListener)

    async def go() -> None:
        await api.run_async(testing.small_config(), tmp_path / "r", listener=listener, stop=stop)

    from friendsim.runtime.status import RunInterrupted

    with pytest.raises(RunInterrupted):
        asyncio.run(go())
    assert api.open_run(tmp_path / "r").manifest.windows == 1


def test_rewards_table_names_a_bad_column_or_row(small_run: Path) -> None:
    table = api.open_run(small_run).rewards()
    assert len(table) == 8 and table[-1] == table[7]
    with pytest.raises(api.RunError, match=r"unknown column 'bogus'; columns: window, agent, SOC"):
        table.column("bogus")
    with pytest.raises(IndexError, match=r"row 999 out of range: the rewards table has 8 rows"):
        table[999]
    with pytest.raises(IndexError, match=r"row -9 out of range"):
        table[-9]
    with pytest.raises(TypeError, match=r"for a column use table\.column\('total'\)"):
        table["total"]  # type: ignore[call-overload]


def test_exports_name_a_target_that_cannot_be_written(small_run: Path, tmp_path: Path) -> None:
    run = api.open_run(small_run)
    before = run.db.read_bytes()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(
        api.RunError, match=rf"out_dir: {re.escape(str(a_file))} is a file, not a directory"
    ):
        run.export_parquet(a_file)
    with pytest.raises(
        api.RunError, match=rf"out: {re.escape(str(tmp_path))} is a directory; give the file"
    ):
        run.export_events_parquet(tmp_path)
    with pytest.raises(api.RunError, match=rf"out: {re.escape(str(tmp_path))} is a directory"):
        run.export_rewards_parquet(tmp_path)
    with pytest.raises(api.RunError, match=rf"{re.escape(str(a_file))} is a file, not a directory"):
        run.export_events_parquet(a_file / "events.parquet")
    with pytest.raises(api.RunError, match=r"this run's own events\.db; refusing to overwrite"):
        run.export_events_parquet(run.db)
    (tmp_path / "d" / "events.parquet").mkdir(parents=True)
    with pytest.raises(api.RunError, match=r"out_dir: .*d/events\.parquet is a directory"):
        run.export_parquet(tmp_path / "d")
    assert not (tmp_path / "d" / "rewards.parquet").exists()
    assert run.db.read_bytes() == before and a_file.read_text() == "x"
    with pytest.raises(TypeError, match="out must be a path"):
        run.export_events_parquet(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="window must be an int or None, got str"):
        run.graphs(window="2")  # type: ignore[arg-type]


def damage(db: Path, how: str) -> None:
    if how == "empty":
        db.write_bytes(b"")
    elif how == "not a database":
        db.write_bytes(b"garbage" * 200)
    elif how == "no events table":
        db.unlink()
        with sqlite3.connect(db) as con:
            con.execute("CREATE TABLE other (a)")
        con.close()
    else:
        with sqlite3.connect(db) as con:
            con.execute("UPDATE events SET payload = '{bad' WHERE seq = 1")
        con.close()


@pytest.mark.parametrize("how", ["empty", "not a database", "no events table", "bad row"])
def test_a_damaged_event_log_is_a_run_error_naming_it(
    small_run: Path, tmp_path: Path, how: str
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(small_run, copy)
    damage(copy / "events.db", how)
    run = api.open_run(copy)
    reads: dict[str, Callable[[], object]] = {
        "events": lambda: list(run.events()),
        "event_counts": run.event_counts,
        "rewards": run.rewards,
        "graphs": run.graphs,
        "export_parquet": lambda: run.export_parquet(tmp_path / "pq"),
    }
    for what, read in reads.items():
        with pytest.raises(api.RunError, match=rf"{re.escape(str(copy / 'events.db'))}: ") as info:
            read()
        assert "events" in str(info.value), what
    assert not (tmp_path / "pq").exists() or not list((tmp_path / "pq").iterdir())


def test_events_export_counts_agree_with_the_log(small_run: Path, tmp_path: Path) -> None:
    run = api.open_run(small_run)
    paths = run.export_parquet(tmp_path / "pq")
    assert sorted(p.name for p in paths.values()) == ["events.parquet", "rewards.parquet"]
    n = run.export_events_parquet(tmp_path / "pq" / "events.parquet")  # replaces the file
    assert n == sum(Counter(e.kind for e in run.events()).values())
    manifest = json.loads((small_run / "manifest.json").read_text())
    assert manifest["status"] == "completed"


def test_a_library_run_prints_nothing_on_stdout_and_keeps_the_application_s_logging(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With structlog unconfigured, ``api.run`` printed its info lines (``run_finished`` ...) on
    stdout, past the key redactor. It now sets friendsim's default (warnings to stderr,
    redacted) only when the application configured nothing, and leaves a configuration alone."""
    import structlog

    from friendsim import api
    from friendsim.testing import small_config

    assert not structlog.is_configured()
    api.run(small_config(), tmp_path / "a")
    out = capsys.readouterr()
    assert out.out == "" and "run_finished" not in out.err
    assert structlog.is_configured()

    structlog.reset_defaults()
    seen: list[str] = []

    def keep(_: object, __: str, event: dict[str, object]) -> str:
        seen.append(str(event["event"]))
        raise structlog.DropEvent

    structlog.configure(processors=[keep])
    mine = structlog.get_config()
    api.run(small_config(), tmp_path / "b")
    assert structlog.get_config() == mine and "run_finished" in seen
    assert capsys.readouterr().out == ""
