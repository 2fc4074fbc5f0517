"""Experiment config files: valid examples load; every kind of mistake gets a clear ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from friendsim.runtime.config import (
    ConfigError,
    ExperimentConfig,
    load_config,
    parse_config,
    resolve_auto_provider,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    if "[sweep]" in path.read_text(encoding="utf-8"):
        from friendsim.sweep.config import load_sweep

        spec = load_sweep(path)
        assert spec.cells(), f"{path.name}: a sweep example must define grid cells"
        return
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.experiment.name


def test_examples_present() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"quickstart.toml", "paper.toml", "continuous.toml"} <= names


def test_paper_example_matches_the_paper() -> None:
    cfg = load_config(ROOT / "examples" / "paper.toml")
    assert (cfg.agents.count, cfg.experiment.rounds, cfg.experiment.n_actions) == (30, 15, 3)
    assert cfg.experiment.theme == "climate change"
    assert cfg.experiment.mode == "rounds"


def test_defaults_and_values(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            """
[experiment]
name = "x"
seed = 11
mode = "continuous"
duration = 7200.0

[agents]
count = 12
policy = "baseline"

[feed]
ranker = "chrono"
limit = 7
""",
        )
    )
    assert cfg.experiment.seed == 11
    assert cfg.experiment.total_duration == 7200.0
    assert cfg.agents.count == 12 and cfg.agents.policy == "baseline"
    assert cfg.feed.ranker == "chrono" and cfg.feed.limit == 7
    assert cfg.llm.cache == "read_through"
    assert cfg.coach.enabled is True


def test_unknown_key_names_the_key_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[experiment]\nsed = 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "[experiment].sed"
    assert "unknown key" in str(err.value)
    assert str(path) in str(err.value)


def test_unknown_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[agentz]\ncount = 3\n"))
    assert err.value.key == "[agentz]"


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[agents]\ncount = "six"\n'))
    assert err.value.key == "[agents].count"
    assert "integer" in err.value.problem and "'six'" in err.value.problem


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[experiment]\nrounds = true\n", "[experiment].rounds", "integer"),
        ('[experiment]\nseed = "7"\n', "[experiment].seed", "integer"),
        ("[experiment]\nrounds = 3.0\n", "[experiment].rounds", "integer"),
        ('[coach]\nenabled = "no"\n', "[coach].enabled", "boolean"),
        ("[coach]\nenabled = 1\n", "[coach].enabled", "boolean"),
        ("[experiment]\nwindow_length = true\n", "[experiment].window_length", "number"),
        ('[[surveys]]\nwindows = ["2"]\n', "[surveys][0].windows[0]", "integer"),
    ],
    ids=["bool-as-int", "str-as-int", "float-as-int", "str-as-bool", "int-as-bool",
         "bool-as-float", "str-in-list"],
)  # fmt: skip
def test_values_are_not_converted_between_toml_types(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    """TOML values are typed: one of the wrong type is a mistake to name, never converted
    (``rounds = true`` used to run one round)."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == key
    assert expected in err.value.problem


def test_values_of_the_right_toml_type_are_taken_as_written(tmp_path: Path) -> None:
    cfg = load_config(
        write(
            tmp_path,
            "[experiment]\nrounds = 4\nwindow_length = 60\nmode = 'continuous'\ntick = 30.0\n"
            "[coach]\nenabled = false\n[[surveys]]\nwindows = [1, 2]\n",
        )
    )
    ex = cfg.experiment
    assert (ex.rounds, ex.window_length, ex.tick, cfg.coach.enabled) == (4, 60.0, 30.0, False)
    assert cfg.surveys[0].windows == (1, 2)
    assert parse_config(cfg.model_dump(mode="json")) == cfg


def test_out_of_range(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[experiment]\nn_actions = 0\n"))
    assert err.value.key == "[experiment].n_actions"
    assert "greater than or equal to 1" in err.value.problem


def test_bad_enum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, '[experiment]\nmode = "realtime"\n'))
    assert err.value.key == "[experiment].mode"
    assert "rounds" in err.value.problem and "continuous" in err.value.problem


def test_missing_persona_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[agents]\npersonas = "nope/people.jsonl"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "[agents].personas"
    assert "persona file not found" in err.value.problem
    assert str(tmp_path / "nope" / "people.jsonl") in err.value.problem


def test_persona_path_is_relative_to_config(tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text("{}\n")
    cfg = load_config(write(tmp_path, '[agents]\npersonas = "p.jsonl"\n'))
    assert cfg.persona_path(tmp_path) == tmp_path / "p.jsonl"


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("gpt4:turbo", "unknown LLM provider 'gpt4'"),
        ("openai", "names no model"),
        ("openai:ftp://host#m", "bad endpoint URL"),
        ("anthropic:", "names no model"),
    ],
)
def test_bad_provider_spec(tmp_path: Path, spec: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f'[llm]\nprovider = "{spec}"\n'))
    assert err.value.key == "[llm].provider"
    assert needle in err.value.problem


def test_bad_override_spec_names_its_index(tmp_path: Path) -> None:
    text = """
[llm]
provider = "local:smollm2"

[[llm.overrides]]
agents = ["a00"]
provider = "openai:gpt-4o-mini"

[[llm.overrides]]
dominant = "SOC"
provider = "nonsense:model"
"""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == "[llm].overrides[1].provider"


def test_override_needs_a_selector(tmp_path: Path) -> None:
    text = '[[llm.overrides]]\nprovider = "openai:gpt-4o-mini"\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == "[llm].overrides[0]"
    assert "'agents'" in err.value.problem


def test_provider_for_agent_then_dominant_then_default() -> None:
    cfg = parse_config(
        {
            "llm": {
                "provider": "local:smollm2",
                "overrides": [
                    {"dominant": "SOC", "provider": "anthropic:claude-haiku-4-5"},
                    {"agents": ["a01"], "provider": "openai:gpt-4o-mini"},
                ],
            }
        }
    )
    assert cfg.provider_for("a01", "SOC") == "openai:gpt-4o-mini"
    assert cfg.provider_for("a02", "SOC") == "anthropic:claude-haiku-4-5"
    assert cfg.provider_for("a03", "EMO") == "local:smollm2"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[experiment\nseed = 1\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "not valid TOML" in str(err.value) and str(path) in str(err.value)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "absent.toml")


def test_tick_longer_than_window(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[experiment]\ntick = 100.0\nwindow_length = 10.0\n"))
    assert err.value.key == "[experiment]"
    assert "tick" in err.value.problem


def test_bad_price_table(tmp_path: Path) -> None:
    text = '[llm.prices."openai:gpt-4o-mini"]\ninput = 0.15\noutptu = 0.6\n'
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == "[llm].prices"
    assert "outptu" in err.value.problem


def test_auto_provider_follows_the_environment() -> None:
    assert resolve_auto_provider({}) == "local:smollm2"
    assert resolve_auto_provider({"OPENAI_API_KEY": "x"}).startswith("openai:")
    assert resolve_auto_provider({"ANTHROPIC_API_KEY": "x"}).startswith("anthropic:")


def test_llm_threads_reach_only_local_providers_and_are_checked() -> None:
    cfg = parse_config({"llm": {"provider": "local:smollm2", "threads": 1}})
    assert cfg.llm.provider_options("local:smollm2") == {"n_threads": 1}
    assert cfg.llm.provider_options("openai:gpt-4o-mini") == {"timeout_s": 60.0}
    keyed = parse_config({"llm": {"api_key_env": "VLLM_KEY", "timeout_s": 5}}).llm
    assert keyed.provider_options("openai:http://h:8000/v1#m") == {
        "timeout_s": 5.0,
        "api_key_env": "VLLM_KEY",
    }
    assert keyed.provider_options("anthropic:claude-haiku-4-5")["api_key_env"] == "VLLM_KEY"
    assert keyed.provider_options("scripted:x") == {}
    with pytest.raises(ConfigError, match=r"api_key_env"):
        parse_config({"llm": {"api_key_env": "not a name"}})
    assert parse_config({}).llm.provider_options("local:smollm2") == {}  # default: the cores
    with pytest.raises(ConfigError, match=r"\[llm\]\.threads"):
        parse_config({"llm": {"threads": 0}})
    with pytest.raises(ConfigError, match="abstention"):
        parse_config({"agents": {"policy": "baseline", "policy_params": {"abstention": 1.5}}})
    cfg = parse_config({"agents": {"policy": "baseline", "policy_params": {"abstention": 0.9}}})
    assert cfg.agents.policy_params == {"abstention": 0.9}
    assert parse_config({"llm": {"prompt_profile": "compact"}}).llm.prompt_profile == "compact"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            '[[interventions]]\nkind = "reward_mix"\nwindow = 2\n'
            "lambdas = { SOC = nan, EMO = 1.0 }\n",
            "[interventions][0].lambdas.SOC",
        ),
        ("[ties]\nthresholds = [0.05, nan]\n", "[ties].thresholds[1]"),
        ("[experiment]\nwindow_length = inf\n", "[experiment].window_length"),
        ('[experiment]\nmode = "continuous"\nwake_rate = inf\n', "[experiment].wake_rate"),
        ("[rewards]\nbeta_soc = -inf\n", "[rewards].beta_soc"),
        (
            '[agents]\npolicy = "baseline"\npolicy_params = { abstention = nan }\n',
            "[agents].policy_params.abstention",
        ),
    ],
    ids=["lambdas", "thresholds", "window_length", "wake_rate", "beta", "policy_params"],
)
def test_non_finite_numbers_are_refused_at_their_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert err.value.key == key
    assert "must be a finite number" in err.value.problem


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ("thresholds = [0.05, 5.0]", "[ties].thresholds[1]", "must be in (0, 1]"),
        ("thresholds = [-1.0]", "[ties].thresholds[0]", "must be in (0, 1]"),
        ("thresholds = []", "[ties].thresholds", "at least 1 item"),
        ("beta_rec = 0.0", "[ties].beta_rec", "TieParams.beta_rec=0.0 is out of range"),
    ],
)
def test_ties_values_the_analysis_would_refuse(
    tmp_path: Path, text: str, key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[ties]\n{text}\n"))
    assert err.value.key == key
    assert words in err.value.problem


@pytest.mark.parametrize("eps", [1.0, 5.0])
def test_a_rewards_eps_the_scorer_would_refuse_is_refused_at_its_key(
    tmp_path: Path, eps: float
) -> None:
    """The reward scorer takes ``eps`` in (0, 1); the config checked only > 0, so ``eps = 5.0``
    passed ``parse_config`` and the run was refused only as it started."""
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"[rewards]\neps = {eps}\n"))
    assert err.value.key == "[rewards].eps"
    assert "less than 1" in err.value.problem
    assert load_config(write(tmp_path, "[rewards]\neps = 0.5\n")).rewards.eps == 0.5


def test_ties_values_the_analysis_accepts_reach_it() -> None:
    from friendsim.analysis.analyze import tie_params_from_manifest
    from friendsim.rundir.manifest import Manifest

    ties = parse_config({"ties": {"thresholds": [1.0, 0.2], "xi": 0.0, "half_life": 0.5}}).ties
    params, thetas = tie_params_from_manifest(Manifest(ties=ties.model_dump(mode="json")))
    assert thetas == (1.0, 0.2) and params.half_life == 0.5 and params.xi == 0.0
