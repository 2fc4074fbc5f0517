"""The event loop a run's process drives (``FRIENDSIM_LOOP``, :mod:`friendsim._loop`).

uvloop is the default where installed; a run records the same log on it as on the stdlib loop
(baseline example configs and a model-backed run over real HTTP), and a bad choice is bad input.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import uvloop
from llm_stub_server import StubLLMServer, mind_responder
from test_example_digests import DIGESTS, EXAMPLES, events_digest

from friendsim import cli
from friendsim._loop import (
    LOOP_ENV,
    LoopChoiceError,
    check_loop_choice,
    loop_choice,
    loop_factory,
    loop_name,
    run,
)
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config, parse_config


async def _which() -> str:
    return loop_name()


def test_the_choice_is_read_from_the_environment() -> None:
    assert loop_choice({}) == "auto"
    assert loop_choice({LOOP_ENV: ""}) == "auto"
    assert loop_choice({LOOP_ENV: " UVLoop "}) == "uvloop"
    assert loop_choice({LOOP_ENV: "asyncio"}) == "asyncio"
    with pytest.raises(LoopChoiceError, match=r"FRIENDSIM_LOOP='trio' names no event loop.*auto"):
        loop_choice({LOOP_ENV: "trio"})


def test_auto_and_uvloop_run_on_uvloop_asyncio_on_the_stdlib_loop() -> None:
    assert loop_factory({LOOP_ENV: "asyncio"}) is None
    assert loop_factory({LOOP_ENV: "uvloop"}) is uvloop.new_event_loop
    assert run(_which(), env={}) == "uvloop"
    assert run(_which(), env={LOOP_ENV: "uvloop"}) == "uvloop"
    assert run(_which(), env={LOOP_ENV: "asyncio"}) == "asyncio"
    assert type(asyncio.new_event_loop()).__module__.startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert loop_factory({}) is None
    assert run(_which(), env={LOOP_ENV: "auto"}) == "asyncio"
    with pytest.raises(LoopChoiceError, match="pip install uvloop"):
        loop_factory({LOOP_ENV: "uvloop"})
    main = _which()
    with pytest.raises(LoopChoiceError):
        run(main, env={LOOP_ENV: "uvloop"})
    assert main.cr_frame is None  # closed, not left to warn "never awaited"


def test_a_missing_uvloop_is_found_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )
    with pytest.raises(LoopChoiceError, match="not installed"):
        check_loop_choice({LOOP_ENV: "uvloop"})
    check_loop_choice({LOOP_ENV: "auto"})  # auto falls back: nothing to refuse


def test_a_bad_choice_is_bad_input_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(LOOP_ENV, "curio")
    out = tmp_path / "run"
    code = cli.main(["run", str(EXAMPLES / "quickstart.toml"), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert "FRIENDSIM_LOOP='curio' names no event loop" in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_example_logs_are_the_same_on_uvloop(name: str, tmp_path: Path) -> None:
    path = EXAMPLES / f"{name}.toml"
    data = load_config(path).model_dump(mode="json")
    data["agents"]["policy"] = "baseline"
    cfg = parse_config(data, source=path)
    run(
        run_experiment(cfg, out_dir=tmp_path / "run", config_path=path),
        env={LOOP_ENV: "uvloop"},
    )
    assert events_digest(tmp_path / "run" / "events.db") == DIGESTS[name]


def test_a_model_backed_run_over_http_records_the_same_log_on_both_loops(tmp_path: Path) -> None:
    """The lean HTTP client on uvloop's transports: same requests answered, same log."""
    digests = {}
    with StubLLMServer(responder=mind_responder(0)) as stub:
        for loop in ("asyncio", "uvloop"):
            cfg = parse_config(
                {
                    "experiment": {"name": "loops", "seed": 5, "rounds": 2, "n_actions": 2},
                    "agents": {"count": 12, "policy": "llm"},
                    "llm": {
                        "provider": f"openai:{stub.openai_base_url}#gpt-4o-mini",
                        "retries": 0,
                        "cache": "off",
                        "concurrency": 8,
                    },
                    "rewards": {"sentiment": "lexicon"},
                }
            )
            result = run(run_experiment(cfg, out_dir=tmp_path / loop), env={LOOP_ENV: loop})
            assert result.manifest.status == "completed"
            assert result.manifest.llm_usage["total"]["calls"] > 24
            assert result.manifest.llm_usage["total"].get("errors", 0) == 0
            digests[loop] = events_digest(tmp_path / loop / "events.db")
    assert digests["asyncio"] == digests["uvloop"]
    assert digests["asyncio"][1] > 100
