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

Errors: an argument of the wrong type is a ``TypeError`` naming the argument and the type
expected, raised before anything is written; a bad config is a
:class:`~friendsim.runtime.config.ConfigError` naming the file and the key; a run directory that
cannot give what was asked (a missing or unreadable ``events.db`` or ``manifest.json``, an
unknown event kind or column, an export target that is a directory) is a :class:`RunError`
naming the file or the argument.
Importing this module is cheap and has no side effects: components are imported when first
used. See docs/api.md.
"""

from __future__ import annotations

import asyncio
import operator
import os
import tomllib
import weakref
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

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
    "parse_config",
    "run",
    "run_async",
]

EVENTS_PARQUET = "events.parquet"
REWARDS_PARQUET = "rewards.parquet"

PathLike = str | os.PathLike[str]
T = TypeVar("T")


class RunError(ValueError):
    """A path is not a readable run directory, or a run cannot give what was asked; the message
    names the file or the argument."""


_SOURCES: dict[int, tuple[weakref.ref[ExperimentConfig], Path]] = {}
"""The file each live config object returned by :func:`load_config` was read from, by the
object's id (the entry goes when the object does): :func:`run` resolves a config object's
relative paths against it. Config objects are frozen and take no attribute of their own."""


def _remember_source(cfg: ExperimentConfig, path: Path) -> None:
    key = id(cfg)

    def forget(ref: weakref.ref[ExperimentConfig]) -> None:
        entry = _SOURCES.get(key)
        if entry is not None and entry[0] is ref:
            del _SOURCES[key]

    _SOURCES[key] = (weakref.ref(cfg, forget), path)


def _config_source(cfg: ExperimentConfig) -> Path | None:
    """The file :func:`load_config` read ``cfg`` from (``None`` for any other config object)."""
    entry = _SOURCES.get(id(cfg))
    if entry is None or entry[0]() is not cfg:
        return None
    return entry[1]


def _type_name(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _check_path(value: object, name: str) -> Path:
    """``value`` as a path, or a ``TypeError`` (not a path) / :class:`RunError` (empty) naming
    the argument ``name``."""
    if not isinstance(value, str | os.PathLike):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {_type_name(value)}")
    if os.fspath(value) == "":
        raise RunError(f"{name}: the path is empty")
    return Path(value)


def _check_config_arg(config: object) -> None:
    from friendsim.runtime.config import ExperimentConfig

    if isinstance(config, ExperimentConfig):
        return
    if isinstance(config, str | os.PathLike):
        _check_path(config, "config")
        return
    raise TypeError(
        f"config must be a config object or the path of a TOML file, got {_type_name(config)}; "
        "pass api.load_config(path), or api.parse_config(data) for a dict of TOML tables"
    )


_LISTENER_HOOKS = ("run_started", "wake_applied", "window_ended")


def _check_run_args(
    config: object,
    out_dir: object,
    *,
    config_path: object,
    listener: object,
    llm_factory: object,
    env: object,
    stop: object = None,
) -> None:
    """Every argument of :func:`run_async` of the type it takes, before anything is written:
    else a ``TypeError`` naming the argument and the type expected."""
    _check_config_arg(config)
    _check_path(out_dir, "out_dir")
    if config_path is not None:
        _check_path(config_path, "config_path")
    if listener is not None:
        missing = [h for h in _LISTENER_HOOKS if not callable(getattr(listener, h, None))]
        if missing:
            raise TypeError(
                f"listener must be a friendsim.runtime.engine.RunListener (or have its methods "
                f"{', '.join(_LISTENER_HOOKS)}); {_type_name(listener)} lacks {', '.join(missing)}"
            )
    if llm_factory is not None and not callable(llm_factory):
        raise TypeError(
            f"llm_factory must be a callable taking a provider spec, got {_type_name(llm_factory)}"
        )
    if env is not None:
        if not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of str to str, got {_type_name(env)}")
        bad = [(k, v) for k, v in env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            key, value = bad[0]
            raise TypeError(
                f"env must be a mapping of str to str; env[{key!r}] is {_type_name(value)}"
            )
    if stop is not None and not isinstance(stop, asyncio.Event):
        raise TypeError(f"stop must be an asyncio.Event, got {_type_name(stop)}")


def _run_blocking(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run the coroutine ``make()`` to its end on the loop ``FRIENDSIM_LOOP`` chooses and return
    its result: on this thread, or, when this thread is already running an event loop (Jupyter,
    an async test), on a worker thread with a loop of its own, this thread waiting for it."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_on_loop(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="friendsim-run") as pool:
        return pool.submit(lambda: run_on_loop(make())).result()


def load_config(path: PathLike, *, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate an experiment TOML file, optionally changing settings first.

    ``overrides`` maps dotted keys to values, as in a sweep's grid: ``{"agents.policy":
    "baseline", "coach.enabled": False}``. The result is checked as a whole, so a bad override
    raises :class:`friendsim.runtime.config.ConfigError` naming the key, like a bad file does;
    a key that goes through a value that is not a table raises :class:`RunError`. The files
    the config names (its persona file) must exist, relative to the file's folder.

    The returned object remembers ``path``: :func:`run` resolves its relative paths against
    that file's folder and names the file in its errors, unless given ``config_path``. A
    ``path`` that is not a ``str``/``os.PathLike``, or ``overrides`` that are not a mapping
    with ``str`` keys, raise ``TypeError`` naming the argument.
    """
    from friendsim.runtime.config import check_config_files
    from friendsim.runtime.config import load_config as load_toml
    from friendsim.runtime.config import parse_config as parse_data

    p = _check_path(path, "path")
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise TypeError(
                "overrides must be a mapping of dotted keys to values, e.g. "
                f'{{"agents.count": 20}}, got {_type_name(overrides)}'
            )
        keys = [k for k in overrides if not isinstance(k, str)]
        if keys:
            raise TypeError(
                "overrides: every key must be a dotted key (str) such as 'agents.count', "
                f"got {keys[0]!r}"
            )
        if "" in overrides:
            raise RunError("overrides: a key is empty; give a dotted key such as 'agents.count'")
    cfg = load_toml(p)
    if overrides:
        from friendsim.sweep.config import apply_overrides

        data = tomllib.loads(p.read_text(encoding="utf-8"))
        try:
            changed = apply_overrides(data, overrides)
        except ValueError as exc:
            raise RunError(f"overrides: {exc}") from None
        source = f"{p} with overrides {dict(overrides)!r}"
        cfg = parse_data(changed, source=source)
        check_config_files(cfg, base=p.parent, source=source)
    _remember_source(cfg, p)
    return cfg


def parse_config(data: Mapping[str, Any]) -> ExperimentConfig:
    """Validate an experiment given as data: the tables of a TOML file as a mapping
    (``{"experiment": {"seed": 1}, "agents": {"count": 20}}``). A bad value raises
    :class:`~friendsim.runtime.config.ConfigError` naming the key; ``data`` that is not a
    mapping raises ``TypeError``. The result has no file of its own: :func:`run` resolves its
    relative paths (a persona file) against ``config_path``, else the current directory."""
    from friendsim.runtime.config import parse_config as parse_data

    if not isinstance(data, Mapping):
        raise TypeError(
            f"data must be a mapping of TOML tables, got {_type_name(data)}; "
            "for a TOML file use api.load_config(path)"
        )
    return parse_data(data, source="<parse_config>")


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

    ``config`` is a validated config (:func:`load_config`, :func:`parse_config`) or the path of
    a TOML file. ``config_path`` is where relative paths in a config object are resolved (its
    persona file) and the file named in its errors; by default the file ``config`` was read
    from (a path, or a config object from :func:`load_config`), else the current directory.
    ``listener`` receives progress (windows, actions; a
    :class:`~friendsim.runtime.engine.RunListener`), ``llm_factory`` replaces how model clients
    are built (e.g. :mod:`friendsim.testing`'s scripted model), ``env`` replaces the environment
    read for API keys, and setting ``stop`` ends the run at the next safe point with status
    ``"interrupted"``. An argument of the wrong type raises ``TypeError`` naming it before
    anything is written. A run that fails raises; what it recorded stays in ``out_dir``.

    Logging: unless the application has configured structlog, the run configures friendsim's
    default (:func:`~friendsim.runtime.logs.configure_logging`: warnings and errors to stderr,
    every value through the key redactor). structlog's own default would print every info line
    to stdout, unredacted.
    """
    import structlog

    from friendsim.runtime.assembly import run_experiment

    _check_run_args(
        config,
        out_dir,
        config_path=config_path,
        listener=listener,
        llm_factory=llm_factory,
        env=env,
        stop=stop,
    )
    if not structlog.is_configured():
        from friendsim.runtime.logs import configure_logging

        configure_logging("warning")
    if isinstance(config, str | os.PathLike):
        config_path = config if config_path is None else config_path
        cfg = load_config(config)
    else:
        cfg = config
        if config_path is None:
            config_path = _config_source(cfg)
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
    _check_run_args(
        config,
        out_dir,
        config_path=config_path,
        listener=listener,
        llm_factory=llm_factory,
        env=env,
    )
    return _run_blocking(
        lambda: run_async(
            config,
            out_dir,
            config_path=config_path,
            listener=listener,
            llm_factory=llm_factory,
            env=env,
        )
    )


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
    installed. A row index out of range raises ``IndexError`` naming the number of rows; an
    unknown column, :class:`RunError` listing the columns."""

    columns: tuple[str, ...]
    rows: tuple[Mapping[str, Any], ...]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        """Row ``index`` (negative counts from the end)."""
        if isinstance(index, str):
            raise TypeError(
                f"rows are indexed by position (int), got {index!r}; "
                f"for a column use table.column({index!r})"
            )
        try:
            i = operator.index(index)
        except TypeError:
            raise TypeError(
                f"rows are indexed by position (int), got {_type_name(index)}"
            ) from None
        n = len(self.rows)
        if not -n <= i < n:
            rows = "no rows" if n == 0 else f"{n} rows (0..{n - 1})"
            raise IndexError(f"row {i} out of range: the rewards table has {rows}")
        return self.rows[i]

    def column(self, name: str) -> list[Any]:
        """The values of column ``name`` in row order; :class:`RunError` listing the columns
        for a name that is none of them."""
        if name not in self.columns:
            raise RunError(f"unknown column {name!r}; columns: {', '.join(self.columns)}")
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
        only those of the given kinds (names such as ``"post_created"`` or event classes).
        An unknown kind, or an ``events.db`` that cannot be read or decoded (empty, not a
        database, a damaged row), raises :class:`RunError` naming it."""
        from friendsim.analysis.rewards_cli import iter_events
        from friendsim.platform.events import EVENT_TYPES

        wanted: set[str] = set()
        for k in kinds:
            name = k if isinstance(k, str) else getattr(k, "kind", "")
            if name not in EVENT_TYPES:
                raise RunError(f"unknown event kind {k!r}; kinds: {', '.join(sorted(EVENT_TYPES))}")
            wanted.add(name)
        try:
            for event in iter_events(self.db):
                if not wanted or event.kind in wanted:
                    yield event
        except RunError:
            raise
        except (ValueError, OSError) as exc:
            raise _read_error(exc, self.db) from exc

    def event_counts(self) -> dict[str, int]:
        """How many events of each kind the log holds."""
        return dict(Counter(e.kind for e in self.events()))

    def rewards(self) -> RewardsTable:
        """The rewards table, scored from the log with the run's reward settings and mixes."""
        from friendsim.analysis.parquet import REWARD_COLUMNS
        from friendsim.analysis.rewards_cli import rewards_table

        events = self.events()  # a log that cannot be read is a RunError naming events.db
        try:
            rows = rewards_table(self.path, manifest=self.manifest, events=events)
        except RunError:
            raise
        except (ValueError, OSError) as exc:
            raise _read_error(exc, self.path) from exc
        return RewardsTable(columns=REWARD_COLUMNS, rows=tuple(rows))

    def graphs(self, *, window: int | None = None) -> RunGraphs:
        """The tie, follow and interaction networks at the end of ``window`` (default: the
        last), computed by :mod:`friendsim.analysis` from the log with the run's tie settings.
        A window that never ended raises :class:`RunError`; one that is not an int,
        ``TypeError``."""
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

        if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
            raise TypeError(f"window must be an int or None, got {_type_name(window)}")
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
        :mod:`friendsim.analysis.parquet`; an existing file is replaced, its folder created if
        needed); returns the number of events. ``out`` that is a directory, lies under a file,
        or is one of the run's own files raises :class:`RunError` naming it, before anything
        is written; so does a log that cannot be read."""
        from friendsim.analysis.parquet import write_events_parquet

        dest = self._check_out(out, "out", default=EVENTS_PARQUET)
        return self._write(dest, lambda: write_events_parquet(self.db, dest), reading=self.db)

    def export_rewards_parquet(self, out: PathLike) -> int:
        """Write the rewards table to the Parquet file ``out`` (as
        :meth:`export_events_parquet`); returns the number of rows."""
        from friendsim.analysis.parquet import write_rewards_parquet

        dest = self._check_out(out, "out", default=REWARDS_PARQUET)
        rows = self.rewards().rows
        return self._write(dest, lambda: write_rewards_parquet(rows, dest), reading=dest)

    def export_parquet(self, out_dir: PathLike) -> dict[str, Path]:
        """Write ``events.parquet`` and ``rewards.parquet`` into ``out_dir`` (created if needed;
        existing files of those names are replaced); returns their paths by table name.
        ``out_dir`` that is a file, or a target that is a directory, raises :class:`RunError`
        naming it; the log is read and scored before either file is written, so a log that
        cannot be read leaves nothing behind."""
        from friendsim.analysis.parquet import write_events_parquet, write_rewards_parquet

        d = _check_path(out_dir, "out_dir")
        if d.exists() and not d.is_dir():
            raise RunError(f"out_dir: {d} is a file, not a directory")
        _check_parents(d, "out_dir")
        paths = {"events": d / EVENTS_PARQUET, "rewards": d / REWARDS_PARQUET}
        for p in paths.values():
            self._check_out(p, "out_dir", default=p.name)
        rows = self.rewards().rows
        events, rewards = paths["events"], paths["rewards"]
        self._write(events, lambda: write_events_parquet(self.db, events), reading=self.db)
        self._write(rewards, lambda: write_rewards_parquet(rows, rewards), reading=rewards)
        return paths

    def _check_out(self, out: object, arg: str, *, default: str) -> Path:
        """``out`` as the path of a Parquet file to write, or :class:`RunError` naming ``arg``."""
        from friendsim.rundir import RunLayout

        dest = _check_path(out, arg)
        if dest.is_dir():
            raise RunError(
                f"{arg}: {dest} is a directory; give the file to write, e.g. {dest / default}"
            )
        _check_parents(dest, arg)
        layout = RunLayout.of(self.path)
        own = (layout.events, layout.manifest, layout.personas, layout.llm_cache, layout.lock)
        taken = {*own, *(layout.events.with_name(layout.events.name + x) for x in ("-wal", "-shm"))}
        if dest.exists() and any(dest.samefile(p) for p in taken if p.exists()):
            raise RunError(f"{arg}: {dest} is this run's own {dest.name}; refusing to overwrite it")
        return dest

    def _write(self, dest: Path, write: Callable[[], int], *, reading: Path) -> int:
        """``write()``, its errors as :class:`RunError`: an ``OSError`` naming ``dest``, a
        ``ValueError`` (a log that cannot be read) naming ``reading``."""
        if not self.db.is_file():
            raise RunError(f"{self.path}: no longer a run directory (no {self.db.name})")
        try:
            return write()
        except RunError:
            raise
        except OSError as exc:
            raise RunError(f"{dest}: cannot write: {exc.strerror or exc}") from exc
        except ValueError as exc:
            raise _read_error(exc, reading) from exc


def _check_parents(path: Path, arg: str) -> None:
    """The nearest existing folder above ``path`` is a folder (else a file is in the way)."""
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunError(f"{arg}: {parent} is a file, not a directory")
            return


def _read_error(exc: BaseException, where: Path) -> RunError:
    """A :class:`RunError` for ``exc`` met reading ``where``, the message naming the file."""
    msg = str(exc) or type(exc).__name__
    return RunError(msg if str(where) in msg else f"{where}: {msg}")


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
