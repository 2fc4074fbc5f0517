"""A third-party package adds a feed ranker and an LLM provider through entry points.

The package is created in a temporary folder, really installed (``pip install --target``, no
network, no build isolation) and put on ``PYTHONPATH`` of a ``friendsim run`` subprocess whose
config names its ranker and its provider. friendsim's own files are not touched (checked by
hashing the installed package before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import friendsim

PLUGIN = '''
"""A friendsim plug-in for the tests: a ranker and a provider."""
from friendsim.registry import Plugin
from friendsim.testing import ScriptedLLM, plausible_responder
from pydantic import BaseModel, ConfigDict


class RecentFirstParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    depth: int = 5


class RecentFirst:
    """Newest items first, ``depth`` at most."""

    name = "recent-first"

    def __init__(self, *, depth: int) -> None:
        self.depth = depth
        self.calls = 0

    async def rank(self, db, query):
        rows = await db.execute_fetchall(
            "SELECT post_id FROM posts WHERE author <> ? ORDER BY t DESC, post_id DESC LIMIT ?",
            (query.agent, min(self.depth, query.limit)),
        )
        return [r[0] for r in rows]


recent_first = Plugin(factory=RecentFirst, params=RecentFirstParams, summary="newest first")


def echo_provider(model, **options):
    return ScriptedLLM(plausible_responder(3), model=f"echo-{model}", provider="echo")
'''

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "friendsim-test-plugin"
version = "0.0.1"

[project.entry-points."friendsim.rankers"]
recent-first = "fs_test_plugin:recent_first"

[project.entry-points."friendsim.providers"]
echo = "fs_test_plugin:echo_provider"

[tool.setuptools]
py-modules = ["fs_test_plugin"]
"""

CONFIG = """
[experiment]
name = "plugged"
seed = 5
rounds = 2
n_actions = 2

[agents]
count = 4
policy = "llm"

[llm]
provider = "echo:tiny"
cache = "off"

[feed]
ranker = "recent-first"
params = { depth = 3 }
limit = 10
"""


def _package_digest() -> str:
    h = hashlib.sha256()
    root = Path(friendsim.__file__).parent
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_third_party_ranker_and_provider_run_without_editing_friendsim(tmp_path: Path) -> None:
    before = _package_digest()
    src = tmp_path / "plugin"
    src.mkdir()
    (src / "fs_test_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    (src / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
    )
    assert list(site.glob("friendsim_test_plugin-*.dist-info"))
    cfg = tmp_path / "plugged.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert set(manifest["models"].values()) == {"echo:tiny"}
    conn = sqlite3.connect(out / "events.db")
    try:
        served = conn.execute("SELECT payload FROM events WHERE kind = 'feed_served'").fetchall()
        posts = conn.execute("SELECT count(*) FROM events WHERE kind = 'post_created'").fetchone()
    finally:
        conn.close()
    rankers = {json.loads(p)["ranker"] for (p,) in served}
    assert rankers == {"recent-first"}
    assert max(len(json.loads(p)["post_ids"]) for (p,) in served) <= 3  # the plug-in's param
    assert posts[0] >= 4
    usage = manifest["llm_usage"]["total"]
    assert usage["calls"] > 0
    assert _package_digest() == before


def test_without_the_package_the_names_are_clear_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "plugged.toml"
    cfg.write_text(CONFIG, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "unknown LLM provider 'echo'" in proc.stderr
    assert not (tmp_path / "r" / "events.db").exists()
