"""The report in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``) loads
``report.html`` from disk with no console errors, its DOM holds the figures as decodable PNG
data URIs, and a screenshot is taken (into the test's tmp dir).

How console errors are read: Chromium started with ``--enable-logging=stderr --v=0`` writes every
page console message (``console.error``, uncaught exceptions, Content-Security-Policy violations
such as a blocked external image) to stderr as a line containing ``:CONSOLE``. The negative
control below proves this detection sees such errors.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_analyze_fixture import build_run_dir
from test_report_html import png_size
from test_sweep_aggregate import build_sweep_dir

from friendsim.report.render import RUN_SECTION_IDS, SECTION_IDS, write_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(),
        reason="headless Chromium not installed (apt-get install chromium)",
    ),
]


def chromium(url: str, profile: Path, *extra: str) -> tuple[str, list[str]]:
    """Run Chromium on ``url``; returns stdout and the console lines of stderr."""
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *extra, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln or "Uncaught" in ln]
    return proc.stdout, console


class DomScan(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "img":
            self.images[a.get("id", "")] = a.get("src", "")


def check_in_browser(
    page: Path, tmp_path: Path, sections: tuple[str, ...], images: set[str]
) -> None:
    dom, console = chromium(page.as_uri(), tmp_path / "profile-dom", "--dump-dom")
    assert console == []
    scan = DomScan()
    scan.feed(dom)
    assert scan.sections == list(sections)
    assert set(scan.images) == images
    for src in scan.images.values():
        assert src.startswith("data:image/png;base64,")
        w, h = png_size(base64.b64decode(src.split(",", 1)[1]))
        assert w > 0 and h > 0
    shot = tmp_path / "shot.png"
    _, console = chromium(
        page.as_uri(), tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,3000"
    )
    assert console == []
    w, h = png_size(shot.read_bytes())
    assert (w, h) == (1200, 3000)


def test_run_report_renders_without_console_errors(tmp_path: Path) -> None:
    run = build_run_dir(tmp_path / "run", seed=4, windows=3)
    page = write_report(run)
    check_in_browser(
        page,
        tmp_path,
        RUN_SECTION_IDS,
        {"fig-rewards", "fig-components", "fig-network", "fig-degrees"},
    )


def test_sweep_report_renders_without_console_errors(tmp_path: Path) -> None:
    sd = build_sweep_dir(tmp_path / "sweep", reps=2, windows=2)
    page = write_report(sd)
    check_in_browser(
        page,
        tmp_path,
        (*SECTION_IDS, "aggregate"),
        {"fig-rewards", "fig-network-0", "fig-network-1", "fig-degrees"},
    )


def test_console_error_detection_works(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head>"
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline'\"></head><body>"
        "<script>console.error('boom'); notDefined();</script></body></html>"
    )
    _, console = chromium(bad.as_uri(), tmp_path / "profile", "--dump-dom")
    text = "\n".join(console)
    assert "boom" in text and "Uncaught ReferenceError" in text
