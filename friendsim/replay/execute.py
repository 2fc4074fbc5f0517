"""Re-executing a run: new run directories and manifest lineage.

Rerun, resume and fork all re-execute a run through the assembly
(:func:`friendsim.runtime.assembly.run_plan`) with the old run's LLM cache; this module holds
what they share. :func:`new_run_dir` creates the target (refusing a non-empty one) and copies
the old run's ``personas.jsonl`` and a snapshot of its ``llm_cache.db`` into it. A recorded
prefix is re-derived with :attr:`~friendsim.runtime.plan.RunPlan.recorded_until_seq` set, so
a request that misses the cache there raises :class:`~friendsim.llm.errors.CacheMissError`
(fatal to the run) instead of silently calling a live model.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

from friendsim.agents.policies import uses_llm as policy_uses_llm
from friendsim.coach.kinds import uses_llm as coach_uses_llm
from friendsim.moderation.kinds import uses_llm as moderator_uses_llm
from friendsim.rundir.errors import RunInputError
from friendsim.rundir.layout import LLM_BATCHES_DB, LLM_CACHE_DB, MANIFEST, PERSONAS
from friendsim.rundir.log import connect, require_file, sha256_file, snapshot
from friendsim.rundir.manifest import Manifest
from friendsim.runtime.config import ExperimentConfig
from friendsim.runtime.plan import Phase


def new_run_dir(old: Path, new: Path) -> Path:
    """Create ``new`` (absent or empty) with the old run's personas and a copy of its LLM cache
    and batch journal (a pending batch is then collected, not submitted again). ``new`` may not
    be ``old`` nor lie inside it: the old run is only read."""
    if new.resolve() == old.resolve():
        raise RunInputError(f"the new run directory must differ from the old one ({old})")
    if old.resolve() in new.resolve().parents:
        raise RunInputError(
            f"{new} is inside the run {old}, which is only read; choose an --out outside it"
        )
    if new.exists() and (not new.is_dir() or any(new.iterdir())):
        raise RunInputError(f"{new} exists and is not an empty directory; choose another --out")
    require_file(old / PERSONAS, "persona file of the run")
    new.mkdir(parents=True, exist_ok=True)
    try:
        shutil.copyfile(old / PERSONAS, new / PERSONAS)
    except PermissionError as exc:
        if exc.filename != str(old / PERSONAS):
            raise
        raise RunInputError(f"{old / PERSONAS}: cannot read it ({exc.strerror})") from None
    if (old / LLM_CACHE_DB).is_file():
        snapshot(old / LLM_CACHE_DB, new)
    if (old / LLM_BATCHES_DB).is_file():
        snapshot(old / LLM_BATCHES_DB, new)
    return new


def check_recorded_answers(run_dir: Path, manifest: Manifest) -> None:
    """Refuse, naming the file, a run whose manifest names its recorded model answers
    (``files.llm_cache``) when that file is gone: its windows cannot be re-derived, and finding
    it out by re-running them up to the first cache miss would leave a ``failed`` run behind."""
    name = manifest.files.llm_cache
    if name is not None:
        require_file(
            run_dir / name, f"recorded model answers of the run ({MANIFEST} files.llm_cache)"
        )


def check_answers_kept(run_dir: Path, manifest: Manifest, phases: Sequence[Phase]) -> None:
    """Refuse a run recorded under ``[llm] cache = "off"`` whose configs (``phases``, as
    :func:`~friendsim.replay.phases.recorded_phases` rebuilt them) ask a model: none of its answers were
    kept, so its windows cannot be re-derived, and finding it out by re-running them up to the
    first request would leave a ``failed`` run behind, as for a cache file that is gone
    (:func:`check_recorded_answers`). Call it only when recorded windows are to be re-derived:
    a resume of a run that ended no window runs everything live, and needs no answers."""
    if manifest.files.llm_cache is not None or manifest.config.get("llm", {}).get("cache") != "off":
        return
    users = [who for p in phases for who in _model_users(p.config)]
    if users:
        raise RunInputError(
            f'{run_dir}: recorded with [llm] cache = "off" and {users[0]}, so none of its model '
            f"answers were kept ({MANIFEST} files.llm_cache is null) and its windows cannot be "
            "re-derived; only a run recorded with another cache mode can be resumed, forked or "
            "re-run (run the config again)"
        )


def _model_users(cfg: ExperimentConfig) -> list[str]:
    """What asks a model in a run under ``cfg``, each as its config key says it."""
    users = []
    if policy_uses_llm(cfg.agents.policy):
        users.append(f"[agents] policy = {cfg.agents.policy!r}")
    if cfg.coach.enabled and coach_uses_llm(cfg.coach.kind):
        users.append(f"[coach] kind = {cfg.coach.kind!r}")
    if cfg.moderation.enabled and moderator_uses_llm(cfg.moderation.kind):
        users.append(f"[moderation] kind = {cfg.moderation.kind!r}")
    return users


@contextlib.contextmanager
def undone_if_refused(new: Path) -> Iterator[None]:
    """Around creating ``new`` (:func:`new_run_dir`) and re-executing into it: a refusal before
    the re-execution recorded anything (no manifest in ``new``: the population does not fit
    this machine's memory, say) leaves what was there before, and nothing else. The folders
    this created go; an empty ``new`` it was given is emptied again; a folder that held
    something is never touched (:func:`new_run_dir` refuses it). Best effort: the refusal being
    raised matters more."""
    top = new
    while not top.parent.exists() and top.parent != top:
        top = top.parent
    created = None if new.exists() else top
    was_empty = created is None and new.is_dir() and not any(new.iterdir())
    try:
        yield
    except BaseException:
        if not (new / MANIFEST).is_file():
            try:
                if created is not None:
                    shutil.rmtree(created, ignore_errors=True)
                elif was_empty:
                    empty_folder(new)
            except OSError:
                pass
        raise


def empty_folder(folder: Path) -> None:
    """Remove everything inside ``folder`` (a link is removed, not followed), keeping it."""
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def manifest_sha256(run_dir: Path) -> str:
    """sha256 of ``manifest.json``'s bytes (lineage: which parent manifest a run came from)."""
    return sha256_file(require_file(run_dir / MANIFEST, "run manifest"))


def check_failures_replayable(old: Path, log_copy: Path, *, until_seq: int, scratch: Path) -> None:
    """Refuse, naming the run and what to do, to re-derive a log whose recorded prefix (up to
    ``until_seq``) lost model requests to provider errors (an agent's decision, the coach's
    guidance, a moderation review: the refusal counts each by name) when the run's cache keeps
    no failed requests: a run recorded before friendsim kept them (``llm_failures``).
    Re-deriving such a window would ask the lost request again inside the recorded prefix,
    which must use recorded answers only, and stop there with a cache miss after everything
    before it was re-run.
    ``scratch``: a folder for a copy of the cache (the run itself is only read)."""
    conn = connect(log_copy)
    try:
        by_stage = conn.execute(
            "SELECT json_extract(payload, '$.stage'), min(json_extract(payload, '$.window')), "
            "count(*) FROM events WHERE seq <= ? AND kind = 'action_failed' AND "
            "(json_extract(payload, '$.reason') = 'llm_error' "
            "OR json_extract(payload, '$.stage') = 'llm') GROUP BY 1",
            (until_seq,),
        ).fetchall()
    finally:
        conn.close()
    if not by_stage:
        return
    cache = old / LLM_CACHE_DB
    if not cache.is_file():  # no cache at all: nothing recorded to re-derive from (as before)
        return
    db = sqlite3.connect(snapshot(cache, scratch, name="failures-check.db"))  # the run's own
    try:  # would be touched by opening it (WAL side files)
        kept = (
            db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_failures'"
            ).fetchone()
            is not None
        )
    finally:
        db.close()
    if not kept:
        window = min(int(w) for _, w, _ in by_stage)
        lost = _lost_requests(by_stage)
        raise RunInputError(
            f"{old}: its recorded windows lost {lost} to provider errors "
            f"(the first in window {window}), and its {LLM_CACHE_DB} keeps no failed requests "
            "(the run was recorded by a friendsim before they were kept), so those windows "
            f"cannot be re-derived; fork it at window {window - 1} instead, or run it again"
            if window > 1
            else f"{old}: its window 1 lost {lost} to provider errors "
            f"and its {LLM_CACHE_DB} keeps no failed requests (the run was recorded by a "
            "friendsim before they were kept), so it cannot be re-derived; run it again"
        )


_LOST_NOUNS = {
    "coach": ("coach guidance request", "coach guidance requests"),
    "moderation": ("moderation review", "moderation reviews"),
    "survey": ("survey answer", "survey answers"),
}
_DECISIONS = ("model-backed decision", "model-backed decisions")


def _lost_requests(by_stage: list[tuple[str, int, int]]) -> str:
    """What the lost requests were, by whom they were asked: "3 model-backed decisions and 1
    coach guidance request" (the coach's and the moderator's requests are no agent's
    decisions, though their loss refuses a re-derivation all the same)."""
    counts: dict[tuple[str, str], int] = {}
    for stage, _, n in by_stage:
        nouns = _LOST_NOUNS.get(stage, _DECISIONS)
        counts[nouns] = counts.get(nouns, 0) + int(n)
    order = [_DECISIONS, *_LOST_NOUNS.values()]
    parts = [f"{counts[k]} {k[0] if counts[k] == 1 else k[1]}" for k in order if k in counts]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
