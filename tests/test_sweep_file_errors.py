"""A broken ``sweep.json`` is a :class:`SweepReadError` naming the file and the key at fault, for
the aggregate and for ``friendsim report`` / ``friendsim analyze`` (exit 2, no traceback)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from friendsim.sweep.aggregate import SweepReadError, aggregate_sweep, read_sweep

MALFORMED = [
    ('{"spec": "x", "runs": [{"dir": "r0"}]}', "key 'spec': expected an object, got a string"),
    ('{"spec": {}, "runs": [{"dir": "r0"}]}', "spec: missing key 'cells'"),
    (
        '{"spec": {"cells": [{"name": "a"}]}, "runs": [{"dir": "r0"}]}',
        "spec.cells[0]: missing key 'overrides'",
    ),
    ('{"spec": {"cells": 5}, "runs": []}', "key 'spec.cells': expected a list of cells"),
    ("[1, 2]", "missing 'spec' and 'runs': expected an object holding them, got a list"),
    ('{"runs": 5}', "missing 'spec'"),
    ('{"runs": ["x"]}', "missing 'spec'"),
    ('{"spec": {}, "runs": ["x"]}', "key 'runs[0]': expected an object, got a string"),
    ('{"spec": {}, "runs": [{"dir": 3}]}', "key 'runs[0].dir': expected a path, got a number"),
    (
        '{"spec": {"cells": [{"name": "a", "overrides": {}}], "replications": 1, "grid": {},'
        ' "seeds": [1]}, "runs": [{"dir": "r0", "cell": "a", "status": "completed"}]}',
        "runs[0]: missing key 'rep'",
    ),
    (
        '{"spec": {"cells": [{"name": "a", "overrides": {}}], "replications": true, "grid": {},'
        ' "seeds": [1]}, "runs": []}',
        "key 'spec.replications': expected an integer, got a boolean",
    ),
    ("[" * 100_000 + "]" * 100_000, "cannot read it"),
    ('{"spec": {}, "runs": [{"dir": "../r0"}]}', "key 'runs[0].dir': '../r0' is outside the sweep"),
    ('{"spec": {}, "runs": [{"dir": "/tmp"}]}', "key 'runs[0].dir': '/tmp' is outside the sweep"),
]


def _sweep(tmp_path: Path, body: str) -> Path:
    (tmp_path / "r0").mkdir()
    (tmp_path / "sweep.json").write_text(body, encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize(("body", "message"), MALFORMED)
def test_aggregate_names_the_file_and_the_key(tmp_path: Path, body: str, message: str) -> None:
    sd = _sweep(tmp_path, body)
    with pytest.raises(SweepReadError) as info:
        aggregate_sweep(sd, write=False)
    assert str(info.value).startswith(f"{sd / 'sweep.json'}: {message}")


def test_read_sweep_leaves_aggregate_keys_to_the_aggregate(tmp_path: Path) -> None:
    """The live view's sweep list needs only ``spec`` and the runs' ``dir``."""
    sd = _sweep(tmp_path, '{"spec": {}, "runs": [{"dir": "r0", "cell": {"x": 1}}]}')
    assert read_sweep(sd)["runs"] == [{"dir": "r0", "cell": {"x": 1}}]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["report", "analyze"])
@pytest.mark.parametrize(("body", "message"), MALFORMED[:7])
def test_report_and_analyze_exit_2_with_the_message(
    tmp_path: Path, command: str, body: str, message: str
) -> None:
    (tmp_path / "sweep").mkdir()
    sd = _sweep(tmp_path / "sweep", body)
    extra = ["--out", str(tmp_path / "report.html")] if command == "report" else []
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", command, str(sd), *extra],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert f"friendsim {command}: {sd / 'sweep.json'}: {message}" in proc.stderr
