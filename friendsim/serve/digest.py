"""Per-window figures of a run, computed incrementally from its log for the live view.

:class:`RunDigest` feeds the log (read-only, :mod:`.logfile`) through the same pure functions the
analysis uses — :class:`~friendsim.analysis.rewards.RewardScorer` and
:class:`~friendsim.analysis.ties.TieTracker` — and keeps one JSON-ready digest per closed window:
every agent's reward components and total, the symmetrised tie strengths (at or above the run's
smallest threshold) and the window's seq range. Each call to :meth:`RunDigest.update` reads only
the rows it has not seen, so following a live run costs one pass over its log in total.

Of those rows it reads only the kinds the scorer and the tracker read
(:attr:`~friendsim.analysis.rewards.RewardScorer.event_types`,
:data:`~friendsim.analysis.ties.TIE_EVENTS`), selected by SQLite: a run's guidance (a fifth of a
large rounds log's rows, most of its bytes) and the other kinds are never decoded; the rest are
decoded by orjson into events built slot by slot (:meth:`.logfile.LogFile.read_events`,
:func:`~friendsim.platform.events.event_from_row`). The figures, and the JSON the routes send,
are the same as when every row was decoded (``tests/test_serve_digest.py`` holds them to that
digest byte for byte): the scorer ignores every other event and the tracker only adds its actor
to the window's agent list, which the digest does not show. (So a broken row of a kind it does
not read no longer makes the digest fail.) On the 10,000-agent rounds log (150,381 rows) the first
``update`` and ``info`` take 1.7 s of CPU instead of 2.4-2.6 s (best of three to five runs each).

The run's static facts (manifest summary, personas) come from ``manifest.json`` and
``personas.jsonl``, read and never written. Text-based tie evidence needs an LLM pass over the
whole run; the live view uses the signal-based evidence instead and says so in ``notes``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from friendsim.analysis.analyze import (
    RunDirectoryError,
    given,
    run_manifest,
    tie_params_from_manifest,
)
from friendsim.analysis.rewards import RewardScorer
from friendsim.analysis.rewards_params import COMPONENTS, RewardConfigError, RewardParams
from friendsim.analysis.sentiment import get_sentiment
from friendsim.analysis.ties import TIE_EVENTS, TieTracker, symmetrise
from friendsim.platform.events import WindowEnded, WindowStarted
from friendsim.rundir.layout import EVENTS_DB, MANIFEST, PERSONAS
from friendsim.rundir.lock import holder
from friendsim.serve.logfile import LogFile

if TYPE_CHECKING:
    from friendsim.rundir.manifest import Manifest

PAGE = 10_000
NOT_RUNNING_NOTE = (
    "not running: the manifest says running, but no process is writing this run; it was killed "
    "or crashed before it could record how it ended (friendsim run --resume continues it); the "
    "figures cover what its log holds"
)
"""The note of :meth:`RunDigest.info` for a run left ``running`` with nobody holding its lock."""


def _personas(run_dir: Path) -> dict[str, dict[str, Any]]:
    path = run_dir / PERSONAS
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RunDirectoryError(f"{path} line {n}: not JSON: {exc}") from None
            if isinstance(row, dict) and "id" in row:
                out[str(row["id"])] = row
    return out


def _r(x: float) -> float:
    return round(float(x), 5)


class RunDigest:
    """Incremental per-window digest of one run directory (thread-safe; blocking calls)."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.log = LogFile(self.run_dir / EVENTS_DB)
        self._lock = threading.Lock()
        self._scorer: RewardScorer | None = None
        self._ties: TieTracker | None = None
        self._kinds: frozenset[str] = frozenset()
        self.notes: list[str] = []
        self.theta_min = 0.01
        self.thetas: tuple[float, ...] = ()
        self.next_seq = 1
        self.windows: list[dict[str, Any]] = []
        self._open: dict[int, int] = {}

    def _start(self) -> None:
        manifest = run_manifest(self.run_dir)
        try:
            params = RewardParams.from_dict(given(manifest, "rewards") or {})
        except RewardConfigError as exc:
            raise RunDirectoryError(f"{MANIFEST} key 'rewards': {exc}") from None
        lambdas = given(manifest, "lambdas") or {}
        self._scorer = RewardScorer(params=params, lambdas=lambdas)
        tie_params, thetas = tie_params_from_manifest(manifest)
        if tie_params.method == "text":
            self.notes.append(
                "the run scores ties from text with an LLM (friendsim analyze); this view shows "
                "signal-based ties"
            )
            tie_params = replace(tie_params, method="signals")
        self.thetas = thetas
        self.theta_min = min(thetas) if thetas else 0.01
        self._ties = TieTracker(params=tie_params, sentiment=get_sentiment(params.sentiment))
        self._kinds = frozenset(cls.kind for cls in self._scorer.event_types | TIE_EVENTS)

    def update(self) -> int:
        """Read the rows not seen yet; returns the number of closed windows."""
        with self._lock:
            last = self.log.last_seq()
            if self._scorer is None:
                if last == 0:
                    return 0  # nothing logged yet: the manifest may not be written either
                self._start()
            scorer, ties = self._scorer, self._ties
            assert scorer is not None and ties is not None
            while self.next_seq <= last:
                events = self.log.read_events(self.next_seq, PAGE, last, kinds=self._kinds)
                for ev in events:
                    scores = scorer.feed(ev)
                    tw = ties.feed(ev)
                    if isinstance(ev, WindowStarted):
                        self._open[ev.window] = ev.seq
                    if isinstance(ev, WindowEnded):
                        self.windows.append(
                            {
                                "window": ev.window,
                                "start_seq": self._open.pop(ev.window, None),
                                "end_seq": ev.seq,
                                "t": ev.t,
                                "rewards": {
                                    s.agent: {
                                        **{c: _r(s.components[c]) for c in COMPONENTS},
                                        "total": _r(s.total),
                                    }
                                    for s in sorted(scores, key=lambda s: s.agent)
                                },
                                "ties": sorted(
                                    [*sorted(k), _r(v)]
                                    for k, v in symmetrise(tw.strengths if tw else {}).items()
                                    if v >= self.theta_min
                                ),
                            }
                        )
                # rows of other kinds may follow the page's last event, up to ``last``
                self.next_seq = events[-1].seq + 1 if len(events) == PAGE else last + 1
            return len(self.windows)

    def windows_from(self, first: int) -> list[dict[str, Any]]:
        """Digests of the closed windows numbered ``first`` and later (after :meth:`update`)."""
        self.update()
        with self._lock:
            return [w for w in self.windows if w["window"] >= first]

    def info(self, *, agents: bool = True) -> dict[str, Any]:
        """Static facts of the run: manifest summary, personas, thresholds, notes.
        ``agents=False`` leaves out ``agents`` (every agent's persona, megabytes for a large
        run) and reads no personas: what a page that already has them polls.

        ``status`` is the manifest's, verbatim; ``writing`` says whether a live process holds
        the run's lock now (:func:`~friendsim.rundir.lock.holder`). A manifest that says
        ``running`` while nobody writes the run belongs to a run that was killed or crashed
        before it could record how it ended: ``writing`` is then false and ``notes`` says so (with how to
        resume it) instead of the view passing it off as live.
        """
        writer = holder(self.run_dir)  # before the manifest: a writer records its end, then unlocks
        manifest = run_manifest(self.run_dir)
        self.update()
        cfg: Mapping[str, Any] = given(manifest, "config") or {}
        exp: Mapping[str, Any] = cfg.get("experiment") or {}
        planned = exp.get("rounds") if exp.get("mode", "rounds") == "rounds" else None
        status = given(manifest, "status", "unknown")
        notes = list(self.notes)
        if status == "running" and writer is None:
            notes.insert(0, NOT_RUNNING_NOTE)
        out = {
            "name": given(manifest, "name") or self.run_dir.name,
            "status": status,
            "writing": writer is not None,
            "mode": given(manifest, "mode") or exp.get("mode"),
            "policy": given(manifest, "policy"),
            "theme": exp.get("theme"),
            "windows_planned": planned,
            "seed": (given(manifest, "seeds") or {}).get("seed"),
            "coach": (cfg.get("coach") or {}).get("enabled"),
            "components": list(COMPONENTS),
            "thetas": list(self.thetas),
            "agents": self._agents(manifest) if agents else None,
            "last_seq": self.next_seq - 1,
            "notes": notes,
        }
        if not agents:
            del out["agents"]
        return out

    def _agents(self, manifest: Manifest | None) -> dict[str, dict[str, Any]]:
        personas = _personas(self.run_dir)
        lambdas: Mapping[str, Any] = given(manifest, "lambdas") or {}
        dominant: Mapping[str, str] = given(manifest, "dominant") or {}
        models: Mapping[str, str] = given(manifest, "models") or {}
        agents: dict[str, dict[str, Any]] = {}
        for a in sorted(set(personas) | set(lambdas)):
            p = personas.get(a, {})
            agents[a] = {
                "name": p.get("name", a),
                "persona": {k: v for k, v in p.items() if k not in {"id"}},
                "dominant": dominant.get(a, p.get("dominant")),
                "lambdas": lambdas.get(a),
                "model": models.get(a),
            }
        return agents
