"""The HTML report of fixture runs and sweeps: sections, embedded PNGs, files beside the page,
no external resources, escaping, and the ``report`` sub-command's exit codes."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import struct
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from test_analyze_fixture import build_run_dir
from test_sweep_aggregate import build_sweep_dir

from friendsim.analysis.analyze import analysis_cache_path
from friendsim.commands import report as cli_report
from friendsim.report.render import FIGURES_DIR, RUN_SECTION_IDS, SECTION_IDS, write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class PageScan(HTMLParser):
    """Collects section ids, <img> attributes, and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.scripts = 0
        self.meta: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.images.append(a)
        if tag == "script":
            self.scripts += 1
        if tag == "meta":
            self.meta.append(a)
        for k in ("src", "href", "srcset", "action", "data"):
            if k in a:
                self.urls.append(a[k])


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_page(html_path: Path, expected_sections: tuple[str, ...]) -> PageScan:
    text = html_path.read_text(encoding="utf-8")
    scan = PageScan()
    scan.feed(text)
    assert scan.sections == list(expected_sections)
    assert scan.scripts == 0
    assert any("Content-Security-Policy" in m.get("http-equiv", "") for m in scan.meta)
    for url in scan.urls:  # only in-page anchors and data URIs: nothing to fetch
        assert url.startswith(("#", "data:image/png;base64,")), url[:60]
    assert not re.search(r"url\(|@import|https?://", text.split("<body>", 1)[0])
    assert scan.images, "no figures"
    files = {p.name: p.read_bytes() for p in (html_path.parent / FIGURES_DIR).glob("*.png")}
    for img in scan.images:
        data = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        w, h = png_size(data)
        assert w > 100 and h > 100 and len(data) > 1000
        name = img["id"].removeprefix("fig-") + ".png"
        assert files[name] == data  # the same PNG is written beside the page
    return scan


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_run_dir(
        tmp_path_factory.mktemp("rep") / "run", seed=2, windows=3, model="x:<b>m</b>&co"
    )


def test_run_report_sections_and_figures(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    scan = check_page(path, RUN_SECTION_IDS)
    ids = {img["id"] for img in scan.images}
    assert ids == {"fig-rewards", "fig-components", "fig-network", "fig-degrees"}
    text = path.read_text(encoding="utf-8")
    assert "x:&lt;b&gt;m&lt;/b&gt;&amp;co" in text and "<b>m</b>" not in text
    assert "✓" in text or "✗" in text
    analysis = json.loads(analysis_cache_path(run_dir).read_text())["analysis"]
    density = analysis["network"]["ties"]["final"]["0.05"]["density"]
    assert f"{density:.4f}" in text  # the page shows the analysis' numbers
    assert "0.012300" in text  # cost


def test_sweep_report_compares_cells(tmp_path: Path) -> None:
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    path = write_report(sd, theta=0.1, color_by="group")
    scan = check_page(path, (*SECTION_IDS, "aggregate"))
    ids = {img["id"] for img in scan.images}
    assert ids == {"fig-rewards", "fig-network-0", "fig-network-1", "fig-degrees"}
    text = path.read_text(encoding="utf-8")
    assert "coach on vs off" in text
    assert "θ=0.1" in text and "colour = group" in text
    assert "coach.enabled=false (n=2)" in text
    assert "Paired difference vs coach.enabled=true" in text


def _main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="friendsim")
    sp = p.add_subparsers(dest="command", required=True)
    cli_report.register(sp)
    args = p.parse_args(argv)
    return int(args.handler(args))


def test_report_cli(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "elsewhere" / "r.html"
    assert _main(["report", str(run_dir), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out.parent / FIGURES_DIR / "network.png").is_file()
    assert _main(["report", str(tmp_path / "empty")]) == 2
    assert "neither a run directory" in capsys.readouterr().err
    assert _main(["report", str(run_dir), "--theta", "0.3"]) == 2
    assert "not one of the run's thresholds" in capsys.readouterr().err
    assert _main(["report", str(run_dir), "--color-by", "shoe_size"]) == 2
    err = capsys.readouterr().err
    assert "no persona attribute 'shoe_size'; known: " in err
    known = err.split("known: ", 1)[1].strip().split(", ")
    assert "dominant" in known and len(known) == len(set(known))


def test_report_out_must_be_a_regular_file(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out /dev/null`` exited 0 having made ``/dev/figures/`` full of PNGs: the figures go
    beside the page, so a special file as the page is refused before anything is written."""
    fifo = tmp_path / "pipe.html"
    os.mkfifo(fifo)
    assert _main(["report", str(run_dir), "--out", str(fifo)]) == 2
    assert "is not a regular file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.html"]


def test_a_report_computed_cold_does_not_load_scipy_stats(run_dir: Path, tmp_path: Path) -> None:
    """Its confidence bands take the t quantile from ``scipy.special``: importing scipy.stats
    for it was about 0.5 s of CPU, a tenth of what a 3,000-agent run costs."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom friendsim.report.render import write_report\n"
        f"write_report({str(run_dir)!r}, out={str(tmp_path / 'r.html')!r})\n"
        "print('scipy.stats' in sys.modules, 'scipy.special' in sys.modules)"
    )
    env = {**os.environ, "FRIENDSIM_CACHE_DIR": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"]
    assert (tmp_path / "r.html").is_file()


def test_a_run_report_is_drawn_without_full_garbage_collections(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each full collection walks the whole analysis the figures are drawn beside (3 of them,
    about 0.2 s of CPU, in a 3,000-agent run's report); afterwards the thresholds are back."""
    import gc

    from friendsim import _heap
    from friendsim.report import render

    seen: list[int] = []
    real = render.run_report

    def spy(*a: Any, **kw: Any) -> Any:
        seen.append(gc.get_threshold()[2])
        return real(*a, **kw)

    before = gc.get_threshold()
    monkeypatch.setattr(render, "run_report", spy)
    write_report(run_dir, out=tmp_path / "r.html")
    assert seen == [_heap.NO_FULL_COLLECTIONS]
    assert gc.get_threshold() == before
