"""The report of ``examples/misinformation.toml`` (baseline policy) shows the cascade,
moderation and survey sections, checked in headless Chromium: the sections are there and
visible, their figures are decodable PNGs that were laid out, and the page logs no errors."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from friendsim.report.render import write_report
from friendsim.runtime.assembly import run_experiment
from friendsim.runtime.config import load_config

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SECTIONS = ("interventions", "cascades", "moderation", "surveys")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("misinfo") / "run"
    path = EXAMPLES / "misinformation.toml"
    asyncio.run(run_experiment(load_config(path), out_dir=out, config_path=path))
    return write_report(out)


def test_report_html_has_the_instrument_sections(report: Path) -> None:
    html = report.read_text()
    for sec in SECTIONS:
        assert f'id="{sec}"' in html
    assert "injected, false" in html and "injected, true" in html
    assert 'id="fig-moderation"' in html and 'id="fig-surveys"' in html
    assert "Belief in injected items, by truth label" in html


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("apt-get install chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.mark.slow
def test_instrument_sections_in_chromium(report: Path, browser: Any, tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(report.as_uri())
    for sec in SECTIONS:
        el = page.locator(f"section#{sec}, #{sec}").first
        assert el.is_visible(), sec
        box = el.bounding_box()
        assert box is not None and box["height"] > 80, (sec, box)
        el.screenshot(path=str(tmp_path / f"{sec}.png"))
    for fig in ("fig-moderation", "fig-surveys"):
        size = page.evaluate(
            f"() => {{ const i = document.getElementById('{fig}'); "
            "return [i.complete, i.naturalWidth, i.naturalHeight]; }"
        )
        assert size[0] and size[1] > 200 and size[2] > 150, (fig, size)
    rows = page.locator("#cascades table").first.locator("tbody tr")
    assert rows.count() == 3  # injected false, injected true, all items
    assert errors == []
    page.close()
