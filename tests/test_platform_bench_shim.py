"""bench/platform.py is named like the stdlib module: scripts in bench/ must still get the stdlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_platform_from_bench_folder_gives_stdlib() -> None:
    code = (
        "import sys; sys.path.insert(0, 'bench'); import platform; "
        "print(platform.python_version(), platform.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == ".".join(map(str, sys.version_info[:3]))
    assert not out[1].startswith(str(ROOT))


def test_bench_script_runs_as_a_script() -> None:
    out = subprocess.run(
        [sys.executable, "bench/platform.py", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--quick" in out
