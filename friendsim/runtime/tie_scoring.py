"""Text-based tie evidence: an LLM scores each peer 0–5 from one window's transcript only.

This is the step above analysis that asks a model: :func:`score_run_ties` scores a finished run
and stores the result as data in ``<run_dir>/tie_scores.json``
(:mod:`friendsim.analysis.tie_evidence`), which analysis then reads like any other file of the
run. ``friendsim analyze``, ``friendsim report`` and every sweep replication call it before
analysing; it does nothing for runs with signal-based evidence.

For each window and each agent v with active ties, the model reads that window's transcript (all
public posts and comments of the window, v's own DMs sent and received, and votes by or on v) and
rates the tie v→u for every peer u that v's tie to is active. score/5 becomes e for
:class:`~friendsim.analysis.ties.TieParams` ``method="text"``.

Model output is untrusted: it is validated with pydantic. Output that is not a JSON object with a
``scores`` list makes every requested peer invalid; an entry that fails validation (score not an
integer 0–5) makes its peer invalid; a requested peer the model left out is *missing*. Invalid and
missing peers score 0 (the conservative reading: unsure → 0) and are counted. Provider errors
(:class:`~friendsim.llm.errors.LLMError`) propagate: they are not model output.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from friendsim.analysis.analyze import RunDirectoryError, run_manifest, tie_params_from_manifest
from friendsim.analysis.rewards_cli import iter_events
from friendsim.analysis.tie_evidence import (
    StoredTieScores,
    TextEvidence,
    log_stamp,
    read_tie_scores,
    stored_tie_scores,
    write_tie_scores,
)
from friendsim.analysis.ties import Pair, TieParams, tie_windows
from friendsim.llm.base import LLM, LLMRequest, user
from friendsim.platform.events import (
    DirectMessageSent,
    Event,
    PostCreated,
    VoteCast,
    VoteChanged,
    WindowEnded,
    WindowStarted,
)
from friendsim.rundir.errors import RunLockedError, RunOccupiedError
from friendsim.rundir.layout import EVENTS_DB, LLM_CACHE_DB, MANIFEST
from friendsim.rundir.lock import RunLock, writer_name

if TYPE_CHECKING:
    from friendsim.rundir.manifest import Manifest

MAX_SCORE = 5
DEFAULT_MAX_TRANSCRIPT_CHARS = 12_000


class PeerScore(BaseModel):
    """One peer's score as the model must return it."""

    model_config = ConfigDict(extra="forbid")
    peer: str
    score: int = Field(ge=0, le=MAX_SCORE)


class TieScoreOutput(BaseModel):
    """The structured output schema sent to the model (entries are validated one by one)."""

    scores: list[PeerScore]


class _LooseOutput(BaseModel):
    scores: list[object]


def load_template() -> str:
    """The prompt template shipped in ``friendsim/runtime/prompts/tie_score.txt``."""
    return (
        resources.files("friendsim.runtime")
        .joinpath("prompts/tie_score.txt")
        .read_text(encoding="utf-8")
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerScores:
    """One viewer's scores for one window: peer -> e = score/5 ∈ [0, 1]."""

    viewer: str
    window: int
    scores: Mapping[str, float]
    invalid: int = 0
    missing: int = 0


def parse_scores(raw: object, *, peers: Sequence[str]) -> tuple[dict[str, float], int, int]:
    """Validate model output ``raw`` (decoded JSON or text) for ``peers``.

    Returns (scores, invalid, missing); every requested peer is in ``scores`` (0 unless valid).
    Duplicate entries for a peer keep the lowest score (conservative).
    """
    scores = dict.fromkeys(peers, 0.0)
    wanted = set(peers)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):  # model output: invalid, not a crash
            return scores, len(peers), 0
    try:
        loose = _LooseOutput.model_validate(raw)
    except ValidationError:
        return scores, len(peers), 0
    valid: dict[str, int] = {}
    bad: set[str] = set()
    for entry in loose.scores:
        try:
            ps = PeerScore.model_validate(entry)
        except ValidationError:
            if isinstance(entry, Mapping) and entry.get("peer") in wanted:
                bad.add(str(entry["peer"]))
            continue
        if ps.peer in wanted:
            valid[ps.peer] = min(ps.score, valid.get(ps.peer, MAX_SCORE))
    bad -= set(valid)
    for peer, s in valid.items():
        scores[peer] = s / MAX_SCORE
    missing = len(wanted - set(valid) - bad)
    return scores, len(bad), missing


async def score_peers(
    llm: LLM,
    *,
    viewer: str,
    peers: Sequence[str],
    transcript: str,
    window: int,
    template: str | None = None,
    seed: int | None = 0,
) -> PeerScores:
    """Ask ``llm`` to rate viewer→peer ties 0–5 from ``transcript`` alone."""
    peers = sorted(set(peers))
    if not peers:
        return PeerScores(viewer=viewer, window=window, scores={})
    prompt = Template(template if template is not None else load_template()).safe_substitute(
        viewer=viewer, window=str(window), peers=", ".join(peers), transcript=transcript
    )
    request = LLMRequest(
        system="You rate social ties from transcripts. Answer with JSON only.",
        messages=(user(prompt),),
        json_schema=TieScoreOutput.model_json_schema(),
        temperature=0.0,
        max_tokens=64 + 24 * len(peers),
        seed=seed,
        label="tie_score",
    )
    completion = await llm.complete(request)
    raw = completion.parsed if completion.parsed is not None else completion.text
    scores, invalid, missing = parse_scores(raw, peers=peers)
    return PeerScores(viewer=viewer, window=window, scores=scores, invalid=invalid, missing=missing)


def split_windows(events: Iterable[Event]) -> list[tuple[int, list[Event]]]:
    """The events of each window (``WindowStarted`` .. ``WindowEnded`` inclusive), in order."""
    out: list[tuple[int, list[Event]]] = []
    current: list[Event] | None = None
    for ev in events:
        if isinstance(ev, WindowStarted):
            current = [ev]
            out.append((ev.window, current))
        elif current is not None:
            current.append(ev)
            if isinstance(ev, WindowEnded):
                current = None
    return out


def window_transcript(
    window_events: Sequence[Event],
    *,
    viewer: str,
    authors: Mapping[int, str],
    max_chars: int = DEFAULT_MAX_TRANSCRIPT_CHARS,
) -> str:
    """A plain-text transcript of one window as ``viewer`` may see it.

    ``authors`` maps post ids of earlier windows to their authors (to name comment targets).
    Truncated to ``max_chars`` (keeping the beginning) with an explicit marker.
    """
    author = dict(authors)
    lines: list[str] = []
    for ev in window_events:
        match ev:
            case PostCreated(actor=str(a), post_id=pid, text=text, topic=topic):
                author[pid] = a
                ment = f" (mentions {', '.join(ev.mentions)})" if ev.mentions else ""
                if ev.parent_id is not None:
                    target = author.get(ev.parent_id, "unknown")
                    lines.append(
                        f"[comment #{pid} on #{ev.parent_id} by {target}] {a}{ment}: {text}"
                    )
                else:
                    lines.append(f"[post #{pid}, topic {topic}] {a}{ment}: {text}")
            case DirectMessageSent(actor=str(a), recipient=r, text=text) if viewer in (a, r):
                lines.append(f"[DM] {a} -> {r}: {text}")
            case (
                VoteCast(actor=str(a), post_id=pid, author=au, value=val)
                | VoteChanged(actor=str(a), post_id=pid, author=au, value=val)
            ) if viewer in (a, au) and val != 0:
                verb = "liked" if val > 0 else "disliked"
                lines.append(f"[vote] {a} {verb} {au}'s #{pid}")
            case _:
                pass
    text = "\n".join(lines) if lines else "(no activity)"
    if len(text) > max_chars:
        text = text[:max_chars] + "\n[... transcript truncated ...]"
    return text


async def text_evidence(
    events: Iterable[Event],
    llm: LLM,
    *,
    params: TieParams | None = None,
    template: str | None = None,
    max_chars: int = DEFAULT_MAX_TRANSCRIPT_CHARS,
) -> TextEvidence:
    """Score every active tie of every window with ``llm``; one call per (window, viewer).

    Active pairs come from the signal-based tracker (activity does not depend on evidence).
    Calls run one after another in window and viewer order, so the request sequence (and a
    record/replay cache) is deterministic.
    """
    evs = list(events)
    base = params or TieParams()
    signal_params = TieParams(**{**base.to_dict(), "method": "signals"})
    active = {tw.window: tw.active for tw in tie_windows(evs, params=signal_params)}
    per_window: dict[int, dict[Pair, float]] = {}
    # post ids are unique and a comment's parent precedes it: the whole-log map is exact
    authors = {ev.post_id: ev.actor for ev in evs if isinstance(ev, PostCreated) and ev.actor}
    invalid = missing = calls = 0
    for window, wevs in split_windows(evs):
        by_viewer: dict[str, list[str]] = defaultdict(list)
        for v, u in sorted(active.get(window, ())):
            by_viewer[v].append(u)
        scores: dict[Pair, float] = {}
        for viewer, peers in sorted(by_viewer.items()):
            tr = window_transcript(wevs, viewer=viewer, authors=authors, max_chars=max_chars)
            ps = await score_peers(
                llm, viewer=viewer, peers=peers, transcript=tr, window=window, template=template
            )
            calls += 1
            invalid += ps.invalid
            missing += ps.missing
            for peer, e in ps.scores.items():
                scores[(viewer, peer)] = e
        per_window[window] = scores
    return TextEvidence(per_window=per_window, invalid=invalid, missing=missing, calls=calls)


def tie_llm_spec(manifest: Manifest | None) -> str:
    """The provider that scores a run's text-based tie evidence: the coach's, else the run's
    default (``auto`` resolved to the model the run actually used)."""
    config: Mapping[str, Any] = manifest.config if manifest is not None else {}
    spec = (config.get("coach") or {}).get("provider") or (config.get("llm") or {}).get("provider")
    if not spec or spec == "auto":
        used = sorted(set(manifest.models.values())) if manifest is not None else []
        spec = used[0] if used else "local:smollm2"
    return str(spec)


def score_run_ties(
    run_dir: str | Path, *, llm: LLM | str | None = None, refresh: bool = False
) -> StoredTieScores | None:
    """Score a run's text-based tie evidence and store it in ``<run_dir>/tie_scores.json``.

    Returns ``None`` (and does nothing) when the run's manifest asks for signal-based evidence.
    Stored scores that match the current log and tie parameters are returned as they are unless
    ``refresh``; otherwise every active tie is scored by ``llm`` (an LLM or a provider spec;
    default: :func:`tie_llm_spec`) through the run assembly's LLM stack
    (:func:`~friendsim.runtime.llm_stacks.open_llm_stack`) with the limits, retries and cache mode
    of the run's recorded ``[llm]`` config and its ``llm_cache.db``: with the default
    read-through cache, scoring again replays the recorded answers without asking the model.
    A malformed stored file is an error (:class:`~friendsim.analysis.tie_evidence.TieScoresError`)
    unless ``refresh`` replaces it. Blocking (runs its own event loop); LLM errors propagate.

    Scoring writes into the run (``tie_scores.json``, ``llm_cache.db``), so it holds the run's
    lock meanwhile: a run another process is writing is refused
    (:class:`~friendsim.analysis.analyze.RunDirectoryError` naming the writer), not scored from a
    partial log into its directory. Stored scores that match are read without the lock.
    """
    rd = Path(run_dir)
    db = rd / EVENTS_DB
    if not db.is_file():
        raise RunDirectoryError(f"{rd}: not a run directory (no {EVENTS_DB})")
    manifest = run_manifest(rd)
    params, _ = tie_params_from_manifest(manifest)
    if params.method != "text":
        return None
    stored = None if refresh else read_tie_scores(rd)
    if stored is not None and stored.matches(log_stamp(db), params):
        return stored
    lock = RunLock(rd)
    try:
        lock.acquire(create=False)
    except RunLockedError as exc:
        raise RunDirectoryError(
            f"{rd}: run in progress ({writer_name(exc.pid)}): its text-based tie evidence is "
            "scored once the run has ended; analyse it then"
        ) from None
    except RunOccupiedError as exc:  # e.g. a read-only run directory: scores cannot be stored
        raise RunDirectoryError(
            f"{rd}: cannot store text-based tie scores in the run directory: "
            f"{str(exc).split('; choose another')[0]}"
        ) from None
    try:
        return _score_and_store(rd, db, manifest, params, llm)
    finally:
        lock.release(restore=True)


def _score_and_store(
    rd: Path,
    db: Path,
    manifest: Manifest | None,
    params: TieParams,
    llm: LLM | str | None,
) -> StoredTieScores:
    """Score every active tie of the log at ``db`` and write ``tie_scores.json`` (the caller
    holds the run's lock)."""
    stamp = log_stamp(db)
    # The LLM stack builder and the config schema are imported here, where a model is asked: a run
    # with signal-based evidence (every run by default) is analysed without loading them.
    from friendsim.runtime.config import ConfigError, parse_config
    from friendsim.runtime.llm_stacks import make_ledger, open_llm_stack

    try:
        cfg = parse_config(manifest.config if manifest is not None else {}, source=rd / MANIFEST)
    except ConfigError as exc:
        raise RunDirectoryError(f"{rd / MANIFEST}: the recorded config is invalid: {exc}") from None
    model = llm if llm is not None else tie_llm_spec(manifest)

    async def score() -> TextEvidence:
        stack = await open_llm_stack(
            model, cfg, cache_path=rd / LLM_CACHE_DB, ledger=make_ledger(cfg)
        )
        try:
            return await text_evidence(iter_events(db), stack, params=params)
        finally:
            await stack.aclose()

    evidence = asyncio.run(score())
    name = model if isinstance(model, str) else model.model
    result = stored_tie_scores(log=stamp, params=params, model=name, evidence=evidence)
    write_tie_scores(rd, result)
    return result
