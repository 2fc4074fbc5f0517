"""``run_experiment`` wiring: run directory contents, manifest, byte-identical logs for the same
seed, offline replay from the recorded LLM cache, mixed providers per agent."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from friendsim.llm.base import LLMRequest
from friendsim.llm.errors import CacheMissError
from friendsim.llm.scripted import ScriptedLLM
from friendsim.rundir.errors import RunOccupiedError
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import ConfigError, parse_config
from friendsim.runtime.engine import RunInterrupted, RunListener, WindowTally
from friendsim.runtime.scripted_mind import plausible_responder


def cfg(**over: Any) -> Any:
    data: dict[str, Any] = {
        "experiment": {"name": "t", "seed": 4, "rounds": 3, "n_actions": 2},
        "agents": {"count": 5, "policy": "llm"},
        "llm": {"provider": "scripted", "retries": 0},
        "rewards": {"sentiment": "lexicon"},
    }
    for section, values in over.items():
        data.setdefault(section, {}).update(values)
    return parse_config(data)


def scripted(spec: str) -> ScriptedLLM:
    return ScriptedLLM(plausible_responder(0), model=spec.replace(":", "-"))


def rows(run: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(run / "events.db") as con:
        return con.execute("SELECT * FROM events ORDER BY seq").fetchall()


async def test_same_seed_byte_identical_events_and_manifest(tmp_path: Path) -> None:
    a = await run_experiment(cfg(), out_dir=tmp_path / "a", llm_factory=scripted)
    b = await run_experiment(cfg(), out_dir=tmp_path / "b", llm_factory=scripted)
    assert rows(tmp_path / "a") == rows(tmp_path / "b")
    assert len(rows(tmp_path / "a")) > 50
    c = await run_experiment(
        cfg(experiment={"seed": 5}), out_dir=tmp_path / "c", llm_factory=scripted
    )
    assert rows(tmp_path / "c") != rows(tmp_path / "a")
    m = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert m == json.loads(json.dumps(a.manifest.to_json(), sort_keys=True))
    for key in ("config", "seeds", "packages", "models", "lambdas", "rewards", "llm_usage",
                "friendsim_version", "start_seq", "end_seq"):  # fmt: skip
        assert key in m
    assert m["rewards"]["n_actions"] == 2 and m["seeds"] == {"seed": 4}
    assert m["llm_usage"]["total"]["calls"] > 0 and m["llm_usage"]["total"]["input_tokens"] > 0
    assert m["end_seq"] == rows(tmp_path / "a")[-1][0]
    assert b.manifest.totals == a.manifest.totals
    assert c.manifest.status == "completed"
    personas = (tmp_path / "a" / "personas.jsonl").read_text().splitlines()
    assert [json.loads(p)["id"] for p in personas] == sorted(m["lambdas"])


async def test_replay_from_recorded_cache_needs_no_model(tmp_path: Path) -> None:
    await run_experiment(
        cfg(llm={"cache": "record"}), out_dir=tmp_path / "rec", llm_factory=scripted
    )
    (tmp_path / "rep").mkdir()
    shutil.copy(tmp_path / "rec" / "llm_cache.db", tmp_path / "rep" / "llm_cache.db")

    def no_model(spec: str) -> ScriptedLLM:
        return ScriptedLLM(lambda req: AssertionError("replay must not call the model"))

    result = await run_experiment(
        cfg(llm={"cache": "replay"}), out_dir=tmp_path / "rep", llm_factory=no_model
    )
    assert rows(tmp_path / "rep") == rows(tmp_path / "rec")
    assert (
        result.manifest.llm_usage["total"]["cache_hits"]
        == result.manifest.llm_usage["total"]["calls"]
    )


async def test_replay_of_an_unrecorded_run_stops_loudly(tmp_path: Path) -> None:
    with pytest.raises(CacheMissError):
        await run_experiment(
            cfg(llm={"cache": "replay"}), out_dir=tmp_path / "r", llm_factory=scripted
        )
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == "failed"


async def test_mixed_providers_per_agent_and_dominant(tmp_path: Path) -> None:
    seen: dict[str, set[str]] = {}

    def factory(spec: str) -> ScriptedLLM:
        respond = plausible_responder(0)

        def answer(req: LLMRequest) -> Any:
            seen.setdefault(spec, set()).add(req.system.split('user id "')[1].split('"')[0])
            return respond(req)

        return ScriptedLLM(answer, model=spec)

    c = cfg(
        llm={
            "provider": "scripted:base",
            "overrides": [
                {"agents": ["a00"], "provider": "scripted:special"},
                {"dominant": "SOC", "provider": "scripted:social"},
            ],
        }
    )
    result = await run_experiment(c, out_dir=tmp_path / "m", llm_factory=factory)
    models = result.manifest.models
    dominant = result.manifest.dominant
    assert models["a00"] == "scripted:special"
    for agent, spec in models.items():
        if agent != "a00":
            assert spec == ("scripted:social" if dominant[agent] == "SOC" else "scripted:base")
    for spec, agents in seen.items():
        assert all(models[a] == spec for a in agents)
    assert seen["scripted:special"] == {"a00"}


async def test_refuses_a_used_run_dir_and_bad_persona_counts(tmp_path: Path) -> None:
    await run_experiment(cfg(agents={"policy": "baseline"}), out_dir=tmp_path / "x")
    with pytest.raises(RunOccupiedError):
        await run_experiment(cfg(agents={"policy": "baseline"}), out_dir=tmp_path / "x")
    people = tmp_path / "people.jsonl"
    shutil.copy(tmp_path / "x" / "personas.jsonl", people)
    c = cfg(agents={"policy": "baseline", "personas": str(people), "count": 9})
    with pytest.raises(ConfigError) as err:
        await run_experiment(c, out_dir=tmp_path / "y")
    assert err.value.key == "[agents].count" and "holds only 5" in err.value.problem
    ok = await run_experiment(
        cfg(agents={"policy": "baseline", "personas": str(people), "count": 3}),
        out_dir=tmp_path / "z",
    )
    assert sorted(ok.manifest.lambdas) == ["a00", "a01", "a02"]


async def test_stop_request_ends_the_run_at_a_safe_point(tmp_path: Path) -> None:
    stop = asyncio.Event()

    class StopAfterFirstWindow(RunListener):
        def window_ended(self, tally: WindowTally) -> None:
            stop.set()

    with pytest.raises(RunInterrupted):
        await run_experiment(
            cfg(agents={"policy": "baseline"}),
            out_dir=tmp_path / "s",
            listener=StopAfterFirstWindow(),
            stop=stop,
        )
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    log = rows(tmp_path / "s")
    assert m["status"] == "interrupted" and m["windows"] == 1
    assert m["end_seq"] == log[-1][0]
    kinds = [r[2] for r in log]
    assert kinds.count("window_ended") == 1 and kinds.count("window_started") == 1


class _SlowToClose(ScriptedLLM):
    """A scripted model whose client takes a while to close, announcing when it starts."""

    closing: asyncio.Event

    async def aclose(self) -> None:
        self.closing.set()
        await asyncio.sleep(0.3)
        await super().aclose()


@pytest.mark.parametrize("stopped", [False, True], ids=["completed", "stopped-first"])
async def test_a_cancel_while_the_run_closes_still_closes_it_whole(
    tmp_path: Path, stopped: bool
) -> None:
    """A second Ctrl-C (the run task cancelled) arriving while the run closes: the close runs to
    its end, so the manifest tells the run's real outcome (never ``running``) and the database
    is closed; the outcome, not the late cancellation, is what the caller gets."""
    closing = asyncio.Event()
    stop = asyncio.Event()

    def factory(spec: str) -> ScriptedLLM:
        llm = _SlowToClose(plausible_responder(0), model=spec.replace(":", "-"))
        llm.closing = closing
        return llm

    class StopAfterFirstWindow(RunListener):
        def window_ended(self, tally: WindowTally) -> None:
            if stopped:
                stop.set()

    task = asyncio.ensure_future(
        run_experiment(
            cfg(), out_dir=tmp_path / "r", llm_factory=factory, stop=stop,
            listener=StopAfterFirstWindow(),
        )
    )  # fmt: skip
    await asyncio.wait_for(closing.wait(), 60)
    task.cancel()
    if stopped:
        with pytest.raises(RunInterrupted):
            await task
    else:
        result = await task
        assert result.manifest.status == "completed"
    assert not (tmp_path / "r" / "events.db-wal").exists()  # closed: the WAL folded in
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["status"] == ("interrupted" if stopped else "completed")
    assert m["windows"] == (1 if stopped else 3)
    assert m["end_seq"] == rows(tmp_path / "r")[-1][0]
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_stop_after_window_from_friendsim_testing_stops_a_run_after_that_window(
    tmp_path: Path,
) -> None:
    """The helper users' tests get: the run stops ``interrupted`` once window 2 of 3 has ended,
    its manifest counting 2 windows and its log holding exactly two ``window_ended``."""
    from friendsim.testing import small_config, stop_after_window

    stop, listener = stop_after_window(2)
    cfg = small_config(experiment={"rounds": 3})
    with pytest.raises(RunInterrupted):
        await run_experiment(cfg, out_dir=tmp_path / "r", stop=stop, listener=listener)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["windows"] == 2
    with sqlite3.connect(tmp_path / "r" / "events.db") as con:
        ended = con.execute("SELECT count(*) FROM events WHERE kind = 'window_ended'").fetchone()
    assert ended[0] == 2
