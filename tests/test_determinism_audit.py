"""Same seed + same model answers => the same ``events`` table, whatever else varies (DESIGN §4).

Real runs of the LLM policy over real HTTP against stub servers on 127.0.0.1 that answer like
the in-process scripted mind (:func:`~llm_stub_server.mind_responder`: each answer a function of
its request alone, some of them wrong so that re-asks happen too) after a random delay of their
own (``jitter_s``), so the answers to concurrent requests complete in another order than they
were asked in, and in another order in every run. Each run carries everything that asks a model
or acts mid-run: an LLM coach and an LLM moderator (both bounded by ``[llm] concurrency``),
interventions (items injected, a broadcast, agents added, a persona changed, an agent suspended,
the ranker switched) and a sampled survey whose questions depend on the injected items; rounds
mode uses the compact prompt profile, so a voter's ballot spans several vote chunks.

What is held fixed, and against what, in rounds mode and in continuous mode (several slices per
window, several windows): ``[llm] concurrency`` 1 (one request at a time: answers in the order
asked) against 8, 64, a pool of three endpoints, and 429s falling on other requests in every
run; the same for populations whose wakes outgrow the engine's batches; ``friendsim sweep`` with
``--jobs 1`` against ``--jobs 2`` (replication by replication, each sweep's workers hashing
strings with another seed), whose grid runs every replication at two concurrencies that must
agree too. Each test also checks that what it varies did vary (answers out of order, every pool
member used, 429s given, wrong answers re-asked, two vote chunks in a ballot, wakes larger than
a batch), so a pass is not a run that never raced. Covered elsewhere and not repeated here:
scripted policies answering out of order (``test_runtime_rounds``), recovered provider faults
at a fixed concurrency (``test_chaos``), the event loop (``test_event_loop``), Ray against
local workers on the baseline policy (``test_sweep_ray``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import sqlite3
import threading
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, StubReply, mind_responder
from signal_support import digest

from friendsim.agents.llm_policy import COMPACT_PROFILE
from friendsim.runtime import engine
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config
from friendsim.sweep.config import parse_sweep
from friendsim.sweep.runner import run_sweep

JITTER_S = 0.02
"""The most a stub server waits before an answer: far longer than a run's own work per request,
so concurrent answers overtake each other."""

MODES = ("continuous", "rounds")


def timing(mode: str, windows: int) -> str:
    """The ``[experiment]`` time keys. Rounds: 6 agents x 3 actions give a voter more items
    than one compact vote chunk holds. Continuous: windows of six slices, agents waking
    together in most of them."""
    if mode == "rounds":
        return f'mode = "rounds"\nrounds = {windows}\nn_actions = 3'
    return (
        f'mode = "continuous"\nduration = {3600.0 * windows}\nwindow_length = 3600.0\n'
        "tick = 600.0\nwake_rate = 3.0\nactivity_sigma = 0.5\nn_actions = 2"
    )


def instruments(mode: str, windows: int) -> str:
    """Interventions in window 2 (continuous mode: the items and the broadcast between two
    slices of it) and, the ranker, at the last window; a survey at both."""
    at = "at = 4500.0" if mode == "continuous" else "window = 2"
    return f"""
[[interventions]]
kind = "inject"
{at}
by = "newsdesk"
items = [
  {{ id = "f1", text = "The sea stopped rising last year.", topic = "flooding", source = "tabloid", truth = "false" }},
  {{ id = "t1", text = "Heat records fell again this summer.", topic = "heat waves", source = "agency", truth = "true" }},
]
[[interventions]]
kind = "broadcast"
{at}
text = "Reminder: be kind to each other."
sender = "platform"
[[interventions]]
kind = "add_agents"
window = 2
count = 2
[[interventions]]
kind = "persona"
window = 2
agents = ["a01"]
fields = {{ stance = "skeptical of climate policy", stance_score = -0.8 }}
[[interventions]]
kind = "suspend"
window = 2
agents = ["a02"]
windows = 1
reason = "audit"
[[interventions]]
kind = "ranker"
window = {windows}
ranker = "popularity"
[[surveys]]
name = "panel"
windows = {sorted({2, windows})}
sample = 0.75
questions = ["stance", "trust", "belief"]
"""


def experiment(
    provider: str,
    *,
    mode: str,
    concurrency: int,
    agents: int = 6,
    windows: int = 3,
    retries: int = 0,
    ranker: str | None = None,
) -> str:
    """The audited experiment (TOML) on ``provider`` (``openai:URL[,URL...]#model``); its
    ranker until the last window: ``ranker``, else ``interest`` (continuous) or ``full``."""
    ranker = ranker or ("interest" if mode == "continuous" else "full")
    return f"""
[experiment]
name = "determinism"
seed = 11
{timing(mode, windows)}
[agents]
count = {agents}
policy = "llm"
[llm]
provider = "{provider}"
retries = {retries}
concurrency = {concurrency}
prompt_profile = "compact"
[coach]
kind = "llm"
[moderation]
enabled = true
kind = "llm"
[rewards]
sentiment = "lexicon"
[feed]
ranker = "{ranker}"
limit = 10
{instruments(mode, windows)}"""


class AuditedMind:
    """A stub's ``responder``: :func:`~llm_stub_server.mind_responder`'s answers, except that
    some requests, picked by a digest of the request (so the same ones in every run), get a
    wrong one: a ballot leaving its last item out (asked again for that item alone) or, for
    any other JSON request, prose (asked again whole). So re-asks run concurrently too."""

    def __init__(self) -> None:
        self.mind = mind_responder(0)
        self.wrong: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, api: str, body: dict[str, Any]) -> Any:
        value = self.mind(api, body)
        if not isinstance(value, dict):
            return value  # a text: any is valid
        pick = int(hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest(), 16)
        votes = value.get("votes")
        if isinstance(votes, list) and len(votes) > 1 and pick % 3 == 0:
            wrong, value = "ballot", {"votes": votes[:-1]}
        elif pick % 5 == 0:
            wrong, value = "prose", "Let me think about that for a while."
        else:
            return value
        with self.lock:
            self.wrong[wrong] += 1
        return value


def provider(servers: list[StubLLMServer]) -> str:
    return "openai:" + ",".join(s.openai_base_url for s in servers) + "#stub-model"


def stubs(stack: contextlib.ExitStack, n: int, *, seed: int | None) -> list[StubLLMServer]:
    """``n`` started stub servers answering like the scripted mind, each after a random delay
    from a generator of its own (another ``seed``, another order of answers; ``None``: at once)."""
    return [
        stack.enter_context(
            StubLLMServer(
                responder=AuditedMind(),
                jitter_s=0.0 if seed is None else JITTER_S,
                jitter_seed=0 if seed is None else seed + k,
                nodelay=True,
            )
        )
        for k in range(n)
    ]


def run(tmp: Path, name: str, text: str) -> Path:
    """Run the experiment ``text`` into ``tmp/name``; it must complete with nothing lost."""
    path = tmp / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    out = tmp / name
    result = asyncio.run(run_experiment(load_config(path), out_dir=out, config_path=path))
    m = result.manifest
    assert m.status == "completed", m.stop_reason
    assert m.totals["lost_actions"] == m.totals["lost_answers"] == 0, m.totals
    assert m.totals["lost_guidance"] == m.totals["lost_reviews"] == 0, m.totals
    return out


def kinds(run_dir: Path) -> Counter[str]:
    with sqlite3.connect(f"file:{run_dir / 'events.db'}?mode=ro", uri=True) as con:
        return Counter(k for (k,) in con.execute("SELECT kind FROM events"))


def largest_ballot(run_dir: Path) -> int:
    """The most votes one agent cast in one window."""
    with sqlite3.connect(f"file:{run_dir / 'events.db'}?mode=ro", uri=True) as con:
        row = con.execute(
            "SELECT COUNT(*) AS n FROM events WHERE kind = 'vote_cast' "
            "GROUP BY actor, json_extract(payload, '$.window') ORDER BY n DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0


def largest_wake(run_dir: Path) -> int:
    """The most agents served a feed at one moment (who woke together)."""
    with sqlite3.connect(f"file:{run_dir / 'events.db'}?mode=ro", uri=True) as con:
        row = con.execute(
            "SELECT COUNT(*) AS n FROM events WHERE kind = 'feed_served' GROUP BY t "
            "ORDER BY n DESC LIMIT 1"
        ).fetchone()
    return int(row[0]) if row else 0


def out_of_order(servers: list[StubLLMServer]) -> bool:
    """Whether some server sent its answers in another order than it was asked."""
    return any(s.answered != sorted(s.answered) for s in servers)


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Per mode, the digest of the run at ``concurrency = 1`` (answers in the order asked)."""
    tmp = tmp_path_factory.mktemp("serial")
    digests = {}
    for mode in MODES:
        with contextlib.ExitStack() as stack:
            servers = stubs(stack, 1, seed=None)
            out = run(tmp, mode, experiment(provider(servers), mode=mode, concurrency=1))
        assert not out_of_order(servers)
        mind = servers[0].responder
        assert isinstance(mind, AuditedMind)
        assert mind.wrong["prose"] > 0 and (mind.wrong["ballot"] > 0 or mode == "continuous")
        seen = kinds(out)
        for kind in ("guidance_issued", "moderation_decided", "survey_answered", "item_injected",
                     "broadcast_sent", "persona_changed", "agent_suspended", "feed_changed"):  # fmt: skip
            assert seen[kind] > 0, (mode, kind, seen)
        assert seen["agent_registered"] == 6 + 1 + 2  # the agents, the newsdesk, two joined
        if mode == "rounds":
            assert largest_ballot(out) > COMPACT_PROFILE["vote_chunk"]
        else:
            assert seen["window_started"] == 3 and seen["post_created"] > 20
        digests[mode] = digest(out)
    return digests


VARIANTS: dict[str, dict[str, int]] = {
    "concurrency-8": {"concurrency": 8},
    "concurrency-64": {"concurrency": 64},
    "pool-of-3": {"concurrency": 8, "endpoints": 3},
    "429-every-7th-request": {"concurrency": 8, "retries": 10, "fault_every": 7},
}
"""What varies against the run at concurrency 1 on one endpoint. The 429s (retry after 5 ms)
fall on whichever requests arrive 7th, 14th, ...: other ones in every run (on all eleven
attempts of one request, about once in 10^8 runs)."""


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("mode", MODES)
def test_the_log_does_not_depend_on_concurrency_answer_order_endpoints_or_retries(
    mode: str, variant: str, tmp_path: Path, one_at_a_time: dict[str, str]
) -> None:
    v = VARIANTS[variant]
    with contextlib.ExitStack() as stack:
        servers = stubs(stack, v.get("endpoints", 1), seed=1 + sorted(VARIANTS).index(variant))
        if "fault_every" in v:
            servers[0].fault = StubReply(status=429, headers={"retry-after-ms": "5"})
            servers[0].fault_every = v["fault_every"]
        text = experiment(
            provider(servers), mode=mode, concurrency=v["concurrency"], retries=v.get("retries", 0)
        )
        out = run(tmp_path, "r", text)
    assert out_of_order(servers)
    assert all(s.answered for s in servers)  # every member of a pool answered some
    if "fault_every" in v:
        assert len(servers[0].requests) > len(servers[0].answered)
    assert digest(out) == one_at_a_time[mode]


CROWD = {"rounds": 40, "continuous": 60}
"""Populations whose wakes outgrow the engine's batches: observations built and policies
started 8 at a time, feeds read up to 16 readers ahead, commits begun with 8 answers left."""


@pytest.mark.parametrize("mode", MODES)
def test_a_crowd_s_log_does_not_depend_on_concurrency(mode: str, tmp_path: Path) -> None:
    digests = []
    for concurrency, seed in ((1, None), (64, 5)):
        with contextlib.ExitStack() as stack:
            servers = stubs(stack, 1, seed=seed)
            text = experiment(
                provider(servers), mode=mode, concurrency=concurrency, agents=CROWD[mode],
                ranker="chrono" if mode == "rounds" else None,
            )  # fmt: skip
            out = run(tmp_path, f"c{concurrency}", text)
        assert out_of_order(servers) is (seed is not None)
        assert largest_wake(out) > engine._FEEDS_AHEAD
        digests.append(digest(out))
    assert digests[0] == digests[1]


def test_sweep_replications_are_the_same_with_one_worker_or_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sweep's worker processes hash strings with another seed (``PYTHONHASHSEED``), as
    runs on other machines do; the grid runs every replication at two concurrencies."""
    digests = {}
    with contextlib.ExitStack() as stack:
        servers = stubs(stack, 1, seed=7)
        text = experiment(provider(servers), mode="rounds", concurrency=1, agents=4, windows=2)
        text += '\n[sweep]\nreplications = 2\ngrid = { "llm.concurrency" = [2, 32] }\n'
        cfg = tmp_path / "sweep.toml"
        cfg.write_text(text, encoding="utf-8")
        for jobs in (1, 2):
            monkeypatch.setenv("PYTHONHASHSEED", str(jobs))
            out = tmp_path / f"jobs{jobs}"
            done = run_sweep(parse_sweep(tomllib.loads(text), source=cfg), out, jobs=jobs)
            assert [r["status"] for r in done.runs] == ["completed"] * 4, done.runs
            digests[jobs] = {r["dir"]: digest(out / r["dir"]) for r in done.runs}
    assert out_of_order(servers)
    assert digests[1] == digests[2]
    by_rep = {d: {v for k, v in digests[1].items() if k.endswith(d)} for d in ("rep0", "rep1")}
    assert all(len(v) == 1 for v in by_rep.values()), by_rep  # concurrency 2 = concurrency 32
    assert by_rep["rep0"] != by_rep["rep1"]  # replications have their own seeds
