"""friendsim's Python API: run an experiment, open a finished run, read its events, rewards and
networks, and export them to Parquet. The command line is one client of it; a notebook is another.

    from friendsim import api

    cfg = api.load_config("examples/continuous.toml", overrides={"agents.count": 20})
    run = api.run(cfg, "runs/small")             # or api.run("examples/continuous.toml", ...)
    run = api.open_run("runs/small")              # any run directory, e.g. one from the CLI
    run.status, run.manifest.totals              # the typed manifest (friendsim.rundir)
    posts = [e for e in run.events("post_created")]
    rewards = run.rewards()                       # one row per (window, agent)
    g = run.graphs()                              # networkx: ties per threshold, follow, interactions
    run.export_parquet("out/")                    # out/events.parquet and out/rewards.parquet

Everything here is synchronous except :func:`run_async`; :func:`run` also works inside a running
event loop (Jupyter), where it runs the experiment on a worker thread. Opening a run only reads
its files: ``events.db`` (read-only) and ``manifest.json``.
Importing this module is cheap: components are imported when first used. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim._loop import run as run_on_loop

if TYPE_CHECKING:
    import networkx as nx

    from friendsim.platform.events import Event
    from friendsim.rundir.manifest import Manifest
    from friendsim.runtime.assembly import LLMFactory
    from friendsim.runtime.config import ExperimentConfig
    from friendsim.runtime.engine import RunListener

__all__ = [
    "RewardsTable",
    "Run",
    "RunError",
    "RunGraphs",
    "load_config",
    "open_run",
    "run",
    "run_async",
]

EVENTS_PARQUET = "events.parquet"
REWARDS_PARQUET = "rewards.parquet"

PathLike = str | os.PathLike[str]


class RunError(ValueError):
    """A path is not a readable run directory, or a run cannot give what was asked; the message
    names the file or the argument."""


def load_config(path: PathLike, *, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate an experiment TOML file, optionally changing settings first.

    ``overrides`` maps dotted keys to values, as in a sweep's grid: ``{"agents.policy":
    "baseline", "coach.enabled": False}``. The result is checked as a whole, so a bad override
    raises :class:`friendsim.runtime.config.ConfigError` naming the key, like a bad file does.
    """
    from friendsim.runtime.config import load_config as load_toml
    from friendsim.runtime.config import parse_config

    p = Path(path)
    cfg = load_toml(p)
    if not overrides:
        return cfg
    from friendsim.sweep.config import apply_overrides

    data = tomllib.loads(p.read_text(encoding="utf-8"))
    try:
        changed = apply_overrides(data, overrides)
    except ValueError as exc:
        raise RunError(f"overrides: {exc}") from None
    return parse_config(changed, source=f"{p} with overrides {dict(overrides)!r}")


async def run_async(
    config: ExperimentConfig | PathLike,
    out_dir: PathLike,
    *,
    config_path: PathLike | None = None,
    listener: RunListener | None = None,
    llm_factory: LLMFactory | None = None,
    env: Mapping[str, str] | None = None,
    stop: asyncio.Event | None = None,
) -> Run:
    """Run an experiment into the new run directory ``out_dir`` and open it.

    ``config`` is a validated config (:func:`load_config`) or the path of a TOML file.
    ``config_path`` is where relative paths in a config object are resolved (its persona file);
    by default the file ``config`` was read from, else the current directory. ``listener``
    receives progress (windows, actions), ``llm_factory`` replaces how model clients are built
    (e.g. :mod:`friendsim.testing`'s scripted model), ``env`` replaces the environment read for
    API keys, and setting ``stop`` ends the run at the next safe point with status
    ``"interrupted"``. A run that fails raises; what it recorded stays in ``out_dir``.
    """
    from friendsim.runtime.assembly import run_experiment

    if isinstance(config, str | os.PathLike):
        config_path = config if config_path is None else config_path
        cfg = load_config(config)
    else:
        cfg = config
    result = await run_experiment(
        cfg,
        out_dir=Path(out_dir),
        config_path=None if config_path is None else Path(config_path),
        listener=listener,
        llm_factory=llm_factory,
        env=env,
        stop=stop,
    )
    return open_run(result.run_dir)


def run(
    config: ExperimentConfig | PathLike,
    out_dir: PathLike,
    *,
    config_path: PathLike | None = None,
    listener: RunListener | None = None,
    llm_factory: LLMFactory | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """:func:`run_async`, blocking until the run ends. Inside a running event loop (a notebook)
    the run goes to a worker thread with its own loop, so the call still simply returns."""
    kwargs: dict[str, Any] = {
        "config_path": config_path,
        "listener": listener,
        "llm_factory": llm_factory,
        "env": env,
    }
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_on_loop(run_async(config, out_dir, **kwargs))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="friendsim-run") as pool:
        return pool.submit(lambda: run_on_loop(run_async(config, out_dir, **kwargs))).result()


def open_run(path: PathLike) -> Run:
    """Open the run directory ``path`` (``events.db`` plus ``manifest.json``) for reading.

    Any run directory opens, finished or not: :attr:`Run.status` says which (``"completed"``
    only when the run ran to its end). Raises :class:`RunError` when ``path`` is not a run
    directory or its manifest is unreadable (the message names the file).
    """
    from friendsim.rundir import RunInputError, RunLayout, read_manifest

    layout = RunLayout.of(Path(path))
    if not layout.root.is_dir():
        raise RunError(f"{layout.root}: not a directory (expected a run directory)")
    if not layout.events.is_file():
        raise RunError(f"{layout.root}: not a run directory (no {layout.events.name})")
    try:
        manifest = read_manifest(layout.root)
    except RunInputError as exc:
        raise RunError(str(exc)) from None
    return Run(path=layout.root, manifest=manifest)


@dataclass(frozen=True, kw_only=True, slots=True)
class RewardsTable:
    """The paper's rewards of a run: one row per (window, agent) with every component and the
    λ-weighted ``total``, as computed by :mod:`friendsim.analysis.rewards` from the log.

    Rows are plain dicts (``table[0]["total"]``, ``for row in table``); :meth:`column` gives one
    column as a list, :meth:`to_pandas` and :meth:`to_arrow` a dataframe when those are
    installed."""

    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        return self.rows[index]

    def column(self, name: str) -> list[Any]:
        """The values of column ``name`` in row order."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        return [r[name] for r in self.rows]

    def window_means(self) -> list[dict[str, Any]]:
        """Per window: the number of agents and the mean of every component and the total."""
        from friendsim.analysis.rewards_cli import window_means

        return window_means([dict(r) for r in self.rows])

    def to_arrow(self) -> Any:
        """A ``pyarrow.Table`` (needs the ``parquet`` extra)."""
        from friendsim.analysis.parquet import rewards_arrow

        return rewards_arrow(self.rows)

    def to_pandas(self) -> Any:
        """A ``pandas.DataFrame`` (needs pandas, which friendsim does not install)."""
        try:
            import pandas as pd
        except ImportError:
            raise RunError(
                "to_pandas() needs pandas; install it with: pip install pandas"
            ) from None
        return pd.DataFrame([dict(r) for r in self.rows], columns=list(self.columns))


@dataclass(frozen=True, kw_only=True, slots=True)
class RunGraphs:
    """A run's networks at the end of ``window`` (the last window unless asked otherwise).

    ``ties``: the binarised tie network per threshold θ (undirected; an edge when the
    symmetrised tie strength is at least θ, with its ``strength``); ``tie_strengths``: the
    directed strengths A[u→v] behind them; ``follow``: who follows whom (directed);
    ``interactions``: comments, mentions, DMs and votes from u to v (directed, with ``weight``
    and a count per kind). Every agent is a node of every graph."""

    window: int | None
    ties: Mapping[float, nx.Graph]
    tie_strengths: Mapping[tuple[str, str], float]
    follow: nx.DiGraph
    interactions: nx.DiGraph


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """A run directory opened for reading (see :func:`open_run`): its path and its typed
    manifest (:class:`friendsim.rundir.manifest.Manifest`: config, seeds, models, totals, token
    usage and cost)."""

    path: Path
    manifest: Manifest

    @property
    def db(self) -> Path:
        """The event log, ``events.db``."""
        from friendsim.rundir import RunLayout

        return RunLayout.of(self.path).events

    @property
    def name(self) -> str:
        """The experiment's name."""
        return self.manifest.name or self.path.name

    @property
    def status(self) -> str:
        """``"completed"``, ``"degraded"``, ``"failed"``, ``"interrupted"`` or ``"running"``
        (a run that was killed, or is being written right now)."""
        return str(self.manifest.status)

    def events(self, *kinds: str | type[Event]) -> Iterator[Event]:
        """The log's events in order, as typed events (:mod:`friendsim.platform.events`);
        only those of the given kinds (names such as ``"post_created"`` or event classes)."""
        from friendsim.analysis.rewards_cli import iter_events
        from friendsim.platform.events import EVENT_TYPES

        wanted: set[str] = set()
        for k in kinds:
            name = k if isinstance(k, str) else getattr(k, "kind", "")
            if name not in EVENT_TYPES:
                raise RunError(f"unknown event kind {k!r}; kinds: {', '.join(sorted(EVENT_TYPES))}")
            wanted.add(name)
        for event in iter_events(self.db):
            if not wanted or event.kind in wanted:
                yield event

    def event_counts(self) -> dict[str, int]:
        """How many events of each kind the log holds."""
        return dict(Counter(e.kind for e in self.events()))

    def rewards(self) -> RewardsTable:
        """The rewards table, scored from the log with the run's reward settings and mixes."""
        from friendsim.analysis.parquet import REWARD_COLUMNS
        from friendsim.analysis.rewards_cli import rewards_table

        return RewardsTable(
            columns=REWARD_COLUMNS, rows=tuple(rewards_table(self.path, manifest=self.manifest))
        )

    def graphs(self, *, window: int | None = None) -> RunGraphs:
        """The tie, follow and interaction networks at the end of ``window`` (default: the
        last), computed by :mod:`friendsim.analysis` from the log with the run's tie settings."""
        from friendsim.analysis.analyze import tie_params_from_manifest
        from friendsim.analysis.graphs import (
            agents_and_attributes,
            follow_graph,
            interaction_graph,
            tie_networks,
        )
        from friendsim.analysis.sentiment import get_sentiment
        from friendsim.analysis.ties import tie_graph, tie_windows
        from friendsim.platform.events import WindowEnded

        events = _until_window(list(self.events()), window, self.path)
        params, thetas = tie_params_from_manifest(self.manifest)
        if params.method != "signals":
            raise RunError(
                f"{self.path}: graphs() computes signal-based ties only; this run uses "
                f"[ties] evidence = {params.method!r} (see 'friendsim analyze')"
            )
        sentiment = str(self.manifest.rewards.get("sentiment", "vader"))
        agents, _ = agents_and_attributes(events)
        tws = tie_windows(events, params=params, sentiment=get_sentiment(sentiment))
        if tws:
            ties = tie_networks(tws[-1], thetas=thetas)
            strengths = dict(tws[-1].strengths)
        else:
            ties = {th: tie_graph({}, theta=th, nodes=agents) for th in thetas}
            strengths = {}
        last = max((e.window for e in events if isinstance(e, WindowEnded)), default=None)
        return RunGraphs(
            window=last,
            ties=ties,
            tie_strengths=strengths,
            follow=follow_graph(events, nodes=agents),
            interactions=interaction_graph(events, nodes=agents),
        )

    def export_events_parquet(self, out: PathLike) -> int:
        """Write the event log to the Parquet file ``out`` (columns in
        :mod:`friendsim.analysis.parquet`); returns the number of events."""
        from friendsim.analysis.parquet import write_events_parquet

        return write_events_parquet(self.db, Path(out))

    def export_rewards_parquet(self, out: PathLike) -> int:
        """Write the rewards table to the Parquet file ``out``; returns the number of rows."""
        from friendsim.analysis.parquet import write_rewards_parquet

        return write_rewards_parquet(self.rewards().rows, Path(out))

    def export_parquet(self, out_dir: PathLike) -> dict[str, Path]:
        """Write ``events.parquet`` and ``rewards.parquet`` into ``out_dir`` (created if needed);
        returns their paths by table name."""
        d = Path(out_dir)
        paths = {"events": d / EVENTS_PARQUET, "rewards": d / REWARDS_PARQUET}
        self.export_events_parquet(paths["events"])
        self.export_rewards_parquet(paths["rewards"])
        return paths


def _until_window(events: Sequence[Event], window: int | None, path: Path) -> list[Event]:
    """``events`` up to and including the end of ``window`` (all of them for ``None``)."""
    from friendsim.platform.events import WindowEnded

    if window is None:
        return list(events)
    for i, e in enumerate(events):
        if isinstance(e, WindowEnded) and e.window == window:
            return list(events[: i + 1])
    ended = sorted({e.window for e in events if isinstance(e, WindowEnded)})
    raise RunError(f"{path}: window {window} never ended in this run (ended: {_span(ended)})")


def _span(windows: Iterable[int]) -> str:
    ws = list(windows)
    return "none" if not ws else f"{ws[0]}..{ws[-1]}" if len(ws) > 2 else ", ".join(map(str, ws))
