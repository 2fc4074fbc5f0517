"""The run directory's owner: typed manifest (versioned, upgraded), the run lock, clear errors."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from json_values import holds_float, json_values

from friendsim.rundir import (
    MANIFEST,
    Manifest,
    ManifestError,
    MissingFileError,
    RunLock,
    RunLockedError,
    holder,
    new_manifest,
    read_manifest,
    write_manifest,
)
from friendsim.rundir.errors import RunOccupiedError
from friendsim.rundir.manifest import MANIFEST_VERSION, manifest_bytes
from friendsim.testing import run_small, small_config


def test_manifest_round_trip_keeps_unknown_keys_and_redacts_urls(tmp_path: Path) -> None:
    m = new_manifest(name="x", models={"a": "openai:http://user:pw@host:1/v1#m"})
    m = Manifest.model_validate({**m.model_dump(), "extra_fact": {"k": 1}})
    write_manifest(tmp_path, m)
    raw = json.loads((tmp_path / MANIFEST).read_text())
    assert raw["manifest_version"] == MANIFEST_VERSION
    assert raw["models"]["a"] == "openai:http://***@host:1/v1#m"
    assert "fork" not in raw and "log_sha256" not in raw
    back = read_manifest(tmp_path)
    assert back.name == "x" and back.model_extra == {"extra_fact": {"k": 1}}


def test_version_1_manifest_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps({"name": "old", "status": "completed"}))
    m = read_manifest(tmp_path)
    assert (m.manifest_version, m.name, m.status) == (MANIFEST_VERSION, "old", "completed")
    (tmp_path / MANIFEST).write_text(json.dumps({"manifest_version": MANIFEST_VERSION + 1}))
    with pytest.raises(ManifestError, match="newer friendsim"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text(json.dumps({"status": "exploded"}))
    with pytest.raises(ManifestError, match=r"manifest key status"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(ManifestError, match="not a valid JSON manifest"):
        read_manifest(tmp_path)
    with pytest.raises(MissingFileError):
        read_manifest(tmp_path / "nope")


def test_lock_is_exclusive_names_the_holder_and_dies_with_its_process(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from friendsim.rundir import RunLock; "
            f"RunLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        assert holder(tmp_path) == child.pid
        with pytest.raises(RunLockedError) as err:
            RunLock(tmp_path).acquire()
        assert err.value.pid == child.pid and str(child.pid) in str(err.value)
    finally:
        child.kill()
        child.wait()
    assert holder(tmp_path) is None
    with RunLock(tmp_path) as lock:
        assert lock.held and holder(tmp_path) == os.getpid()
    assert holder(tmp_path) is None


def test_holder_never_creates_files(tmp_path: Path) -> None:
    assert holder(tmp_path) is None
    assert list(tmp_path.iterdir()) == []


def test_a_run_into_a_directory_being_written_fails_at_once(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with RunLock(out):
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError, match=str(os.getpid())):
            run_small(out)
        assert time.perf_counter() - t0 < 5
    assert not (out / "events.db").exists()


def test_out_that_is_a_file_or_holds_a_run_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RunOccupiedError, match="is a file"):
        run_small(f)
    assert f.read_text() == "x"
    done = run_small(tmp_path / "r")
    assert done.manifest.status == "completed" and done.manifest.log_sha256
    before = (tmp_path / "r" / MANIFEST).read_bytes()
    with pytest.raises(RunOccupiedError, match="already holds a run"):
        run_small(tmp_path / "r")
    assert (tmp_path / "r" / MANIFEST).read_bytes() == before


def test_concurrent_runs_into_one_directory_leave_one_intact_run(tmp_path: Path) -> None:
    from friendsim.runtime.assembly import run_experiment

    out = tmp_path / "race"
    cfg = small_config(experiment={"rounds": 3})

    async def both() -> list[object]:
        return await asyncio.gather(
            run_experiment(cfg, out_dir=out),
            run_experiment(cfg, out_dir=out),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], RunLockedError | RunOccupiedError)
    assert read_manifest(out).status == "completed"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), json_values(), max_size=6))
def test_manifest_bytes_are_the_stdlibs_layout(data: dict) -> None:
    """The manifest file's bytes are those of ``json.dumps(indent=2, sort_keys=True,
    ensure_ascii=False)`` plus a newline, except for how float exponents are spelled; it reads
    back as the same value."""
    body = manifest_bytes(data)
    stdlib = (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    assert json.loads(body) == json.loads(stdlib) == data
    if not holds_float(data):
        assert body == stdlib


def test_manifest_bytes_keep_nan_and_odd_types_as_the_stdlib_writes_them() -> None:
    """orjson would write NaN as null and refuses big integers: those go through the stdlib."""
    for data in ({"x": float("nan"), "y": [1.5]}, {"big": 2**70}, {"inf": float("inf")}):
        stdlib = (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        assert manifest_bytes(data) == stdlib
