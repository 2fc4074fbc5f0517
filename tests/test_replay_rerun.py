"""``replay --rerun``: the whole simulation again from its manifest, recorded answers only."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from test_replay_support import checksums, config, make_run, mind_factory, rows

from friendsim.llm.errors import CacheMissError
from friendsim.replay.rerun import rerun
from friendsim.rundir.errors import ManifestMismatchError, RunInputError


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import asyncio

    out = tmp_path_factory.mktemp("rerun") / "run"
    asyncio.run(make_run(out, config(rounds=3, agents=4)))
    return out


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "old"
    shutil.copytree(run_dir, dest)
    return dest


async def test_rerun_gives_an_identical_log(run_dir: Path, tmp_path: Path) -> None:
    before = checksums(run_dir)
    calls: list[str] = []

    def counting(spec: str):  # the provider must never be reached: replay-only
        llm = mind_factory(spec)
        calls.append(spec)
        return llm

    report = await rerun(run_dir, tmp_path / "new", llm_factory=counting)
    assert report.identical and report.diff is None
    assert report.events_new == report.events_old > 50
    assert rows(tmp_path / "new" / "events.db") == rows(run_dir / "events.db")
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["rerun_of"]["identical"] is True
    assert manifest["config"]["llm"]["cache"] == "replay"
    total = manifest["llm_usage"]["total"]
    assert total["cache_hits"] == total["calls"] > 0
    assert checksums(run_dir) == before


async def test_cache_miss_is_a_clear_error_not_a_live_call(run_dir: Path, tmp_path: Path) -> None:
    old = copy_run(run_dir, tmp_path)
    conn = sqlite3.connect(old / "llm_cache.db", isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    key = conn.execute(
        "SELECT key FROM llm_cache WHERE label = 'plan' ORDER BY key LIMIT 1"
    ).fetchone()[0]
    conn.execute("DELETE FROM llm_cache WHERE key = ?", (key,))
    conn.close()
    before = checksums(old)
    with pytest.raises(CacheMissError, match="label='plan'") as info:
        await rerun(old, tmp_path / "new", llm_factory=mind_factory)
    assert info.value.key == key
    assert checksums(old) == before
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert manifest["status"] == "failed"


async def test_an_edited_log_shows_the_first_differing_seq(run_dir: Path, tmp_path: Path) -> None:
    old = copy_run(run_dir, tmp_path)
    conn = sqlite3.connect(old / "events.db", isolation_level=None)
    seq, text = conn.execute(
        "SELECT seq, json_extract(payload, '$.text') FROM events WHERE kind = 'post_created'"
        " ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    conn.execute(
        "UPDATE events SET payload = json_set(payload, '$.text', 'edited') WHERE seq = ?", (seq,)
    )
    conn.execute("UPDATE events SET t = t + 0.5 WHERE seq = ?", (seq + 1,))
    conn.close()
    with pytest.raises(ManifestMismatchError, match="log_sha256"):  # the recorded hash catches it
        await rerun(old, tmp_path / "refused", llm_factory=mind_factory)
    assert not (tmp_path / "refused" / "events.db").exists()
    m = json.loads((old / "manifest.json").read_text())
    del m["log_sha256"]  # as a run from before hashes were recorded
    (old / "manifest.json").write_text(json.dumps(m))
    report = await rerun(old, tmp_path / "new", llm_factory=mind_factory)
    assert not report.identical and report.diff is not None
    d = report.diff
    assert (d.seq, d.column) == (seq, "payload")
    assert d.row_a is not None and d.row_b is not None
    assert json.loads(d.row_a[4])["text"] == "edited" and json.loads(d.row_b[4])["text"] == text
    assert f"seq {seq}, column payload" in str(d)
    manifest = json.loads((tmp_path / "new" / "manifest.json").read_text())
    assert manifest["rerun_of"]["first_diff_seq"] == seq


async def test_rerun_refuses_an_unfinished_run_and_a_used_target(
    run_dir: Path, tmp_path: Path
) -> None:
    old = copy_run(run_dir, tmp_path)
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["status"] = "running"
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunInputError, match="--resume"):
        await rerun(old, tmp_path / "new", llm_factory=mind_factory)
    used = tmp_path / "used"
    used.mkdir()
    (used / "x").write_text("keep me")
    with pytest.raises(RunInputError, match="not an empty directory"):
        await rerun(run_dir, used, llm_factory=mind_factory)
    assert (used / "x").read_text() == "keep me"
