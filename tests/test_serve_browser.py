"""The live view and the report in a real browser: Debian's Chromium (``/usr/bin/chromium``)
driven by Playwright's Python package (the system browser, never a downloaded one).

Every page records its console errors and uncaught exceptions; each test asserts there were
none. Screenshots go to ``tmp/artifacts/`` (or ``$FRIENDSIM_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_support import (
    ARTIFACTS,
    background,
    count_rows,
    finished_run,
    run_cli,
    stop,
    wait_for,
    write_config,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("starlette", reason="the serve extra is part of the test install")
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is part of the test install"
)
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="apt-get install chromium"),
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


class Watched:
    """A page with its console errors, uncaught exceptions and dialogs recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

        def on_dialog(d: Any) -> None:
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", on_dialog)

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        return path

    def close(self) -> None:
        # close the page first: its EventSource must not see the server go away
        self.context.close()


@pytest.fixture
def watched(browser: Any) -> Iterator[Any]:
    pages: list[Watched] = []

    def make() -> Watched:
        w = Watched(browser)
        pages.append(w)
        return w

    yield make
    for w in pages:
        w.close()


def posts_on_page(page: Any) -> int:
    text = page.text_content("#counts") or ""
    m = re.search(r"(\d+) posts", text)
    return int(m.group(1)) if m else 0


def events_on_page(page: Any) -> int:
    text = page.text_content("#counts") or ""
    m = re.search(r"(\d+) events", text)
    return int(m.group(1)) if m else 0


def test_live_posts_arrive_while_a_baseline_run_is_written(tmp_path: Path, watched: Any) -> None:
    # long enough (about 10 s of baseline run here) that the page sees posts arrive twice while
    # it is written: at 100 rounds the run (1.5 s) ended before the page showed the second lot
    cfg = write_config(tmp_path / "live.toml", rounds=1000, agents=12, name="live")
    run = tmp_path / "run"
    run.mkdir()
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_selector("#status")
        writer = subprocess.Popen(
            [sys.executable, "-m", "friendsim", "run", str(cfg), "--out", str(run), "--quiet"]
        )
        try:
            w.page.wait_for_function(
                "() => document.querySelectorAll('#timeline li.item.post').length > 0",
                timeout=120_000,
            )
            first = posts_on_page(w.page)
            assert writer.poll() is None, "the run ended before the page showed a post"
            w.shot("live-first-posts")
            w.page.wait_for_function(
                f"() => /(\\d+) posts/.test(document.querySelector('#counts').textContent) && "
                f"parseInt(document.querySelector('#counts').textContent.match(/(\\d+) posts/)[1]) > {first}",
                timeout=120_000,
            )
            more = posts_on_page(w.page)
            still_running = writer.poll() is None
            assert writer.wait(timeout=300) == 0
        finally:
            stop(writer)  # type: ignore[arg-type]
        assert more > first and still_running, "no new posts arrived while the run was written"
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')",
            timeout=60_000,
        )
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'completed'", timeout=30_000
        )
        assert posts_on_page(w.page) == count_rows(run, "post_created")
        w.shot("live-finished")
        assert w.errors == []


def test_scrubber_steps_a_finished_run_and_agent_pages(tmp_path: Path, watched: Any) -> None:
    run = finished_run(tmp_path, rounds=4, agents=6)
    with background("serve", str(run), "--port", "0") as (_, url):
        windows = httpx.get(f"{url}api/windows", timeout=30).json()["windows"]
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w = watched()
        w.page.goto(url)
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')",
            timeout=60_000,
        )
        assert w.page.get_attribute("#scrubber", "max") == "4"
        assert w.page.text_content("#window-label") == "window 4 of 4"
        for target, button in (
            (3, "#btn-prev"),
            (2, "#btn-prev"),
            (1, "#btn-prev"),
            (2, "#btn-next"),
        ):
            w.page.click(button)
            w.page.wait_for_function(
                f"() => document.querySelector('#window-label').textContent === 'window {target} of 4'"
            )
            w.page.wait_for_function(
                f"() => document.querySelector('#network-caption').textContent.startsWith('after window {target}:')"
            )
            seqs = [
                int(s)
                for s in w.page.eval_on_selector_all(
                    "#timeline li[data-seq]", "els => els.map(e => e.dataset.seq)"
                )
            ]
            win = windows[target - 1]
            end = windows[target]["start_seq"] - 1 if target < 4 else last
            assert seqs and min(seqs) == win["start_seq"] and max(seqs) == end
            assert win["end_seq"] in seqs  # the window's end, then the coach's tips
            curves = w.page.eval_on_selector_all(
                "#rewards polyline",
                "els => els.map(e => e.getAttribute('points').split(' ').length)",
            )
            assert curves == [target] * 6  # five components and the total, one point per window
            w.shot(f"scrubber-window-{target}")
        # drag the slider itself back to window 1
        w.page.eval_on_selector(
            "#scrubber", "e => { e.value = '1'; e.dispatchEvent(new Event('input')); }"
        )
        w.page.wait_for_function(
            "() => document.querySelector('#window-label').textContent === 'window 1 of 4'"
        )
        # an agent's page: persona, reward components per window, tips received
        w.page.click("#network a[href='#/agent/a01'] circle")
        w.page.wait_for_selector("#agent:not([hidden])")
        assert "a01" in (w.page.text_content("#agent-title") or "")
        w.page.eval_on_selector(
            "#live", "e => { e.checked = true; e.dispatchEvent(new Event('change')); }"
        )
        w.page.wait_for_function(
            "() => document.querySelectorAll('#agent-rewards tr').length === 5"
        )
        assert w.page.locator("#agent-tips li").count() > 0
        assert w.page.locator("#agent-actions li").count() > 0
        assert "dominant" in (w.page.text_content("#agent-persona") or "")
        w.shot("agent-page")
        assert w.errors == []


def test_pause_and_step_on_a_served_run(tmp_path: Path, watched: Any) -> None:
    # ~25 ms a window: 400 windows leave seconds between "resumed" and the pause click
    cfg = write_config(tmp_path / "gate.toml", rounds=400, agents=6, name="gate")
    run = tmp_path / "run"
    with background("run", str(cfg), "--out", str(run), "--quiet", "--serve", "0", "--paused") as (
        proc,
        url,
    ):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_selector("#controls:not([hidden])")
        w.page.wait_for_function(
            "() => document.querySelector('#control-state').textContent === 'paused before window 1'",
            timeout=60_000,
        )
        assert count_rows(run, "window_started") == 0
        w.page.click("#btn-step")
        w.page.wait_for_function(
            "() => document.querySelector('#control-state').textContent === 'paused before window 2'",
            timeout=60_000,
        )
        assert count_rows(run, "window_ended") == 1 and count_rows(run, "window_started") == 1
        w.shot("paused-after-step")
        w.page.click("#btn-resume")
        wait_for(lambda: count_rows(run, "window_ended") >= 4, what="the run to resume")
        w.page.click("#btn-pause")
        w.page.wait_for_function(
            "() => document.querySelector('#control-state').textContent.startsWith('paused before window')",
            timeout=60_000,
        )
        held = int((w.page.text_content("#control-state") or "").rsplit(" ", 1)[1])
        ended = count_rows(run, "window_ended")
        assert ended == held - 1
        w.page.wait_for_timeout(1500)
        assert count_rows(run, "window_ended") == ended  # a pause holds the run
        assert w.page.text_content("#status") == "paused"
        w.shot("paused")
        w.page.click("#btn-step")
        w.page.wait_for_function(
            f"() => document.querySelector('#control-state').textContent === 'paused before window {held + 1}'",
            timeout=60_000,
        )
        assert count_rows(run, "window_ended") == ended + 1
        w.page.click("#btn-resume")
        wait_for(
            lambda: '"completed"' in (run / "manifest.json").read_text(), what="the run to end"
        )
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'completed'", timeout=30_000
        )
        w.shot("served-run-completed")
        assert w.errors == []
        w.close()
        assert stop(proc) == 0


async def _hostile_run(run: Path, payload: str) -> None:
    from friendsim.platform import Platform, VirtualClock
    from friendsim.platform.events import WindowEnded, WindowStarted

    platform = await Platform.open(run / "events.db", clock=VirtualClock())
    try:
        await platform.register_agent("a0", name=payload)
        await platform.register_agent("a1", name="Bea")
        await platform.record(WindowStarted(t=0.0, window=1))
        post = await platform.create_post("a0", text=payload, topic="climate")
        await platform.create_post("a1", text=payload, topic="climate", parent_id=post.post_id)
        await platform.send_dm("a1", "a0", text=payload, topic="climate")
        await platform.record(WindowEnded(t=10.0, window=1))
        await platform.flush()
    finally:
        await platform.close()
    await asyncio.to_thread(
        (run / "personas.jsonl").write_text,
        json.dumps({"id": "a0", "name": payload, "dominant": "SOC"}) + "\n",
    )


def test_agent_text_with_markup_is_shown_as_text(tmp_path: Path, watched: Any) -> None:
    payload = (
        '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2; alert(1)">'
    )
    run = tmp_path / "run"
    run.mkdir()
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        pool.submit(asyncio.run, _hostile_run(run, payload)).result()
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_function("() => document.querySelectorAll('#timeline .text').length === 3")
        texts = w.page.eval_on_selector_all("#timeline .text", "els => els.map(e => e.textContent)")
        assert texts == [payload] * 3
        assert (
            w.page.eval_on_selector_all("#timeline img, #timeline script", "els => els.length") == 0
        )
        assert w.page.evaluate("() => window.__pwned") is None
        assert payload in (w.page.text_content("#timeline") or "")
        w.page.goto(url + "#/agent/a0")
        w.page.wait_for_selector("#agent:not([hidden])")
        assert payload in (w.page.text_content("#agent-title") or "")
        assert w.page.eval_on_selector_all("#agent img, #agent script", "els => els.length") == 0
        w.shot("hostile-text")
        assert w.page.evaluate("() => window.__pwned") is None
        assert w.dialogs == [] and w.errors == []


def test_report_of_the_paper_example_has_component_curves_and_coach(
    tmp_path: Path, watched: Any
) -> None:
    text = (ROOT / "examples" / "paper.toml").read_text(encoding="utf-8")
    cfg = tmp_path / "paper.toml"
    cfg.write_text(re.sub(r'(?m)^policy = "llm"', 'policy = "baseline"', text), encoding="utf-8")
    run = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(run), "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli("report", str(run), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    w = watched()
    w.page.goto((run / "report.html").as_uri())
    w.page.wait_for_selector("#components")
    size = w.page.eval_on_selector(
        "#fig-components", "img => [img.complete, img.naturalWidth, img.naturalHeight]"
    )
    assert size[0] and size[1] > 600 and size[2] > 300
    rows = w.page.eval_on_selector_all(
        "#components tbody tr td:first-child", "els => els.map(e => e.textContent)"
    )
    assert rows == ["SOC", "INF", "PRE", "COORD", "EMO", "total"]
    cells = w.page.eval_on_selector_all("#components tbody tr:first-child td", "els => els.length")
    assert cells == 1 + 15  # one column per window of the 15 rounds
    band = w.page.text_content("#components tbody tr:nth-child(5) td:nth-child(16)") or ""
    assert re.fullmatch(r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]", band), band  # EMO, window 15
    followed = w.page.text_content("#coach-followed") or ""
    m = re.fullmatch(r"(\d+)/(\d+) \((\d+)%\)", followed)
    assert m, followed
    # the baseline policy follows a tip with probability 0.7 per action slot
    assert 0.5 < int(m.group(1)) / int(m.group(2)) < 0.9
    assert w.page.locator("#coach table").count() == 3
    assert w.page.locator("#agents tbody tr").count() == 30
    assert w.page.locator("#interventions, #moderation, #surveys, #cascades").count() == 0
    w.shot("paper-report")
    assert w.errors == []


def test_sweep_page_lists_runs_and_opens_one(tmp_path: Path, watched: Any) -> None:
    from test_sweep_aggregate import build_sweep_dir

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        sweep = pool.submit(
            build_sweep_dir, tmp_path / "sweep", reps=2, windows=2, fail_one=True
        ).result()
    with background("serve", str(sweep), "--port", "0") as (_, url):
        data = httpx.get(f"{url}api/sweep", timeout=60).json()
        w = watched()
        w.page.goto(url)
        w.page.wait_for_selector("#runs a.run-link")
        rows = w.page.eval_on_selector_all(
            "#runs tr[data-status]", "els => els.map(e => e.dataset.status)"
        )
        assert rows == [r["status"] for r in data["runs"]]
        assert rows.count("completed") == 3 and rows.count("failed") == 1
        shown = w.page.eval_on_selector_all(
            "#runs tr[data-status] td:nth-child(2)",
            "els => els.map(e => [e.textContent, e.title])",
        )  # the cell's label (an old sweep.json: made from its grid), its folder as the title
        assert shown == [[r["label"], r["cell"]] for r in data["runs"]]
        labels = [r["label"] for r in data["runs"]]
        assert labels == ["coach.enabled=true"] * 2 + ["coach.enabled=false"] * 2
        finals = [r["final_reward"] for r in data["runs"] if r["status"] == "completed"]
        assert all(f is not None and 0.0 <= f <= 1.0 for f in finals)
        w.shot("sweep-page")
        w.page.click("#runs a.run-link >> nth=0")
        w.page.wait_for_url(f"{url}runs/0/")
        w.page.wait_for_function(
            "() => document.querySelector('#window-label').textContent === 'window 2 of 2'",
            timeout=60_000,
        )
        assert posts_on_page(w.page) > 0
        w.shot("sweep-run-page")
        assert w.errors == []


def test_a_killed_run_shows_stopped_and_object_cells_show_as_json(
    tmp_path: Path, watched: Any
) -> None:
    """A run killed with SIGKILL (manifest left at running, lock released) is badged "stopped"
    with the note saying so, in a sweep's list and on its page; a cell value that is an object
    in ``sweep.json`` is shown as JSON text, not ``[object Object]``."""
    from test_serve_audit import killed_run

    sweep = tmp_path / "sweep"
    sweep.mkdir()
    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        run = pool.submit(killed_run, sweep).result()
    cell = {"coach.enabled": True, "x": "<b>1</b>"}
    body = {
        "spec": {"name": "forged"},
        "status": "running",
        "runs": [{"dir": run.name, "cell": cell, "rep": [0], "seed": 7, "status": "running"}],
    }
    (sweep / "sweep.json").write_text(json.dumps(body), encoding="utf-8")
    with background("serve", str(sweep), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_selector("#runs a.run-link")
        cells = w.page.eval_on_selector_all(
            "#runs tr[data-status] td", "els => els.map(e => e.textContent)"
        )
        assert cells[1] == json.dumps(cell, separators=(",", ":")) and cells[2] == "[0]"
        assert cells[4] == "stopped"
        assert w.page.get_attribute("#runs tr[data-status]", "data-status") == "stopped"
        assert "[object Object]" not in (w.page.text_content("#runs") or "")
        w.shot("sweep-killed-run")
        w.page.click("#runs a.run-link >> nth=0")
        w.page.wait_for_url(f"{url}runs/0/")
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'stopped'", timeout=60_000
        )
        assert w.page.get_attribute("#status", "class") == "badge stopped"
        assert "killed" in (w.page.get_attribute("#status", "title") or "")
        assert "friendsim run --resume" in (w.page.text_content("#notes") or "")
        w.shot("killed-run-page")
        assert w.errors == []


def test_the_page_polls_the_run_without_every_persona(tmp_path: Path, watched: Any) -> None:
    """Until a run is completed the page re-read ``api/run`` every 2 s, and ``api/run`` carries
    every agent's persona: 10 MB and 0.6 s of the server's CPU per poll for a 10,000-agent run,
    beside the run itself. It reads ``api/run`` once now and polls ``api/status``, the same
    object without ``agents``; the page still knows its agents and sees the status change."""
    from test_serve_audit import killed_run

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        run = pool.submit(killed_run, tmp_path).result()
    with background("serve", str(run), "--port", "0") as (_, url):
        full = httpx.get(f"{url}api/run", timeout=30).json()
        assert len(full["agents"]) == 8
        status = httpx.get(f"{url}api/status", timeout=30)
        assert status.status_code == 200
        assert status.json() == {k: v for k, v in full.items() if k != "agents"}
        w = watched()
        seen: list[str] = []
        w.page.on("request", lambda r: seen.append(r.url[len(url) :]))
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'stopped'", timeout=60_000
        )
        for _ in range(2):  # two polls
            with w.page.expect_response(lambda r: r.url == f"{url}api/status", timeout=60_000):
                pass
        assert seen.count("api/run") == 1
        w.page.goto(f"{url}#/agent/{next(iter(full['agents']))}")
        w.page.wait_for_function("() => !document.querySelector('#agent').hidden")
        assert (w.page.text_content("#agent-persona") or "").strip()
        assert w.errors == []


def _cut(run: Path, cut: int) -> list[tuple[Any, ...]]:
    """Remove the rows of ``run``'s log from seq ``cut`` on; returns them, in seq order, for the
    test to write back as a run would."""
    con = sqlite3.connect(run / "events.db")
    try:
        later = con.execute("SELECT * FROM events WHERE seq >= ? ORDER BY seq", (cut,)).fetchall()
        con.execute("DELETE FROM events WHERE seq >= ?", (cut,))
        con.commit()
    finally:
        con.close()
    return later


def test_catching_up_on_a_long_log_builds_the_views_once(tmp_path: Path, watched: Any) -> None:
    """While the page caught up on a finished run's log it rebuilt every view (the network of
    every agent, the reward means over every agent and window) at each animation frame, which
    made the catch-up quadratic in the agents: 55 s for a 10,000-agent run whose log the server
    streams in 6 s. Only the counts move now until the rows logged before the page opened have
    arrived; the network is built after them."""
    run = finished_run(tmp_path, rounds=10, agents=30)
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w = watched()
        w.page.add_init_script(
            """window.__builds = [];
            document.addEventListener("DOMContentLoaded", () => {
              new MutationObserver(() => window.__builds.push(
                document.querySelector("#counts").textContent
              )).observe(document.getElementById("network"), { childList: true });
            });"""
        )
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#network-caption').textContent"
            ".startsWith('after window 10:')",
            timeout=60_000,
        )
        builds = w.page.evaluate("window.__builds")
        assert last > 1000 and builds
        assert [b for b in builds if not b.startswith(f"{last} events")] == []
        assert w.errors == []


BUILDS = """() => {
  window.__builds = [];
  new MutationObserver(() => {
    const top = document.querySelector("#timeline li[data-seq]");
    window.__builds.push({ at: performance.now(), seq: S.lastSeq, top: top ? +top.dataset.seq : 0 });
  }).observe(document.getElementById("timeline"), { childList: true });
}"""
"""Records each rebuild of the timeline (one per :func:`render` of the overview): the page's
clock, the last row it had and the newest row the timeline shows."""


def test_rows_streaming_in_rebuild_the_views_at_most_once_a_second(
    tmp_path: Path, watched: Any
) -> None:
    """While rows stream in, the page rebuilds its views (timeline, network, reward curves) at
    most every RENDER_MS = 1 s: rebuilt at each row or animation frame, a large run's network
    and curves cost more than its rows. Only the counts follow every row. The rows that arrive
    last are shown once the second is up, though nothing arrives after them: a change that
    came too soon is put off, never dropped. The page runs on Playwright's clock, which only
    the test moves (100 ms after each lot of rows has arrived), so the bounds are counts of
    rebuilds against the page's own time, whatever the machine's speed."""
    from datetime import UTC, datetime
    from itertools import pairwise

    from friendsim.serve.rows import TIMELINE_KINDS

    render_ms = 1000
    script = (ROOT / "friendsim" / "serve" / "static" / "app.js").read_text()
    assert f"const RENDER_MS = {render_ms};" in script
    run = finished_run(tmp_path, rounds=6, agents=6)
    (cut,) = _log(
        run,
        "SELECT min(seq) FROM events WHERE kind = 'window_started'"
        " AND json_extract(payload, '$.window') = 4",
    )[0]
    later = _cut(run, cut)
    lots = [later[i : i + 4] for i in range(0, len(later), 4)]
    assert len(lots) >= 15
    last = later[-1][0]
    newest_shown = max(row[0] for row in later if row[2] in TIMELINE_KINDS)
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.clock.install(time=0)
        w.page.goto(url)
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{cut - 1} events')"
            " && document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:') && S.status === 'completed'",
            timeout=60_000,
        )
        w.page.evaluate(BUILDS)
        now = w.page.evaluate("() => Date.now()")
        w.page.clock.pause_at(datetime.fromtimestamp((now + render_ms) / 1000, tz=UTC))
        start, before = w.page.evaluate("() => [performance.now(), window.__builds.length]")
        built_at = w.page.evaluate("() => S.builtAt")
        counts = []
        for lot in lots:
            con = sqlite3.connect(run / "events.db")
            try:
                con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", lot)
                con.commit()
            finally:
                con.close()
            w.page.wait_for_function(
                f"() => S.lastSeq === {lot[-1][0]}", polling=50, timeout=30_000
            )
            w.page.clock.run_for(100)
            counts.append(w.page.text_content("#counts") or "")
        streamed = w.page.evaluate("() => [performance.now(), window.__builds]")
        elapsed, builds = streamed[0] - start, streamed[1][before:]
        # the counts followed every lot; the views at most once a second of the page's time
        assert [c.split(" events")[0] for c in counts] == [str(lot[-1][0]) for lot in lots]
        assert elapsed == pytest.approx(100 * len(lots))
        assert 1 <= len(builds) <= elapsed // render_ms + 1, builds
        ats = [built_at] + [b["at"] for b in builds]
        assert all(b - a >= render_ms for a, b in pairwise(ats)), ats
        assert len(lots) > 3 * len(builds)  # not one rebuild per lot
        # the last rows: shown once the second is up, with nothing arriving after them
        w.page.wait_for_function("() => S.windows.length === 6 && !S.fetching", timeout=30_000)
        w.page.clock.run_for(render_ms)
        final = w.page.evaluate("() => window.__builds")[-1]
        assert final["seq"] == last and final["top"] == newest_shown
        assert (w.page.text_content("#network-caption") or "").startswith("after window 6:")
        assert w.errors == []


def _log(run: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"{(run / 'events.db').as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def test_a_long_log_keeps_the_page_bounded_and_draws_the_most_tied(
    tmp_path: Path, watched: Any
) -> None:
    """The page kept every row it received (65 MB of rows and a 100 MB heap for a 10,000-agent
    run) and drew a circle per agent. It keeps the newest MAX_ITEMS rows the timeline shows now,
    however long the log; a window it has let go of, and an agent's page, are read from
    ``api/rows``, showing what they showed; more than 1,000 agents are drawn as the 1,000 most
    strongly tied, the caption saying so, as ``friendsim report`` does."""
    from friendsim.serve.rows import RECENT, TIMELINE_KINDS

    # no coach: its 1,100 rows of tips after each window would be all the timeline shows of it
    cfg = tmp_path / "big.toml"
    cfg.write_text(
        "[experiment]\nname = 'big'\nseed = 3\nrounds = 3\nn_actions = 2\n"
        "[agents]\ncount = 1100\npolicy = 'baseline'\n[coach]\nenabled = false\n"
        "[ties]\nthresholds = [0.05, 0.1]\n"
    )
    run = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    marks = ",".join("?" * len(TIMELINE_KINDS))
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=60).json()["last_seq"]
        windows = httpx.get(f"{url}api/windows", timeout=60).json()["windows"]
        w = watched()
        w.page.add_init_script(
            """window.__retained = [];
            document.addEventListener("DOMContentLoaded", () => {
              new MutationObserver(() => window.__retained.push(
                (S.events || []).length + (S.recent || []).length
              )).observe(document.getElementById("counts"), { childList: true });
            });"""
        )
        w.page.goto(url)
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')"
            " && document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=120_000,
        )
        shown = _log(run, f"SELECT count(*) FROM events WHERE kind IN ({marks})", *TIMELINE_KINDS)
        assert last > 10 * RECENT and shown[0][0] > 5 * RECENT
        retained = w.page.evaluate("window.__retained")
        assert retained and max(retained) <= RECENT, max(retained)
        # the newest rows, newest first
        seqs = w.page.eval_on_selector_all(
            "#timeline li[data-seq]", "els => els.map(e => +e.dataset.seq)"
        )
        newest = _log(
            run,
            f"SELECT seq FROM events WHERE kind IN ({marks}) ORDER BY seq DESC LIMIT ?",
            *TIMELINE_KINDS,
            RECENT,
        )
        assert seqs == [s for (s,) in newest]
        # the network: the 1,000 agents with the greatest tie strength at θ = 0.05
        theta = float(w.page.eval_on_selector("#theta", "e => e.value"))
        tied: dict[str, float] = {}
        for u, v, s in windows[-1]["ties"]:
            if s >= theta:
                tied[u] = tied.get(u, 0.0) + s
                tied[v] = tied.get(v, 0.0) + s
        agents = [a for (a,) in _log(run, "SELECT actor FROM events WHERE kind='agent_registered'")]
        top = sorted(agents, key=lambda a: (-tied.get(a, 0.0), a))[:1000]
        drawn = w.page.eval_on_selector_all(
            "#network a", "els => els.map(e => decodeURIComponent(e.getAttribute('href').slice(8)))"
        )
        assert sorted(drawn) == sorted(top) and len(drawn) == 1000
        caption = w.page.text_content("#network-caption") or ""
        assert caption.endswith("(1,000 most strongly tied of 1,100 agents drawn)"), caption
        # window 2, long gone from the page's rows: read back, votes and parents as the log has
        w.page.click("#btn-prev")
        w.page.wait_for_function(
            "() => document.querySelector('#timeline-caption').textContent"
            " === 'window 2, newest first'"
        )
        lo, hi = windows[1]["start_seq"], windows[2]["start_seq"] - 1
        want = _log(
            run,
            f"SELECT seq FROM events WHERE kind IN ({marks}) AND seq BETWEEN ? AND ?"
            " ORDER BY seq DESC LIMIT ?",
            *TIMELINE_KINDS,
            lo,
            hi,
            RECENT,
        )
        seqs = w.page.eval_on_selector_all(
            "#timeline li[data-seq]", "els => els.map(e => +e.dataset.seq)"
        )
        assert seqs == [s for (s,) in want] and seqs[-1] > lo
        votes = dict(
            (pid, f"▲ {up}  ▼ {down}")
            for pid, up, down in _log(run, "SELECT post_id, likes, dislikes FROM posts")
        )
        items = w.page.eval_on_selector_all(
            "#timeline li[data-post-id]",
            "els => els.map(e => [+e.dataset.postId, e.lastElementChild.textContent,"
            " e.textContent])",
        )
        assert items and all(votes[pid] == tally for pid, tally, _ in items)
        assert any(tally != "▲ 0  ▼ 0" for _, tally, _ in items)
        authors = dict(_log(run, "SELECT post_id, author FROM posts"))
        parents = dict(_log(run, "SELECT post_id, parent_id FROM posts"))
        replies = [(pid, text) for pid, _, text in items if parents[pid] is not None]
        assert replies
        for pid, text in replies:
            assert f"↳ replying to {authors[parents[pid]]}" in text
        # an agent's page: its actions up to window 2, its rewards per window
        agent = top[0]
        w.page.goto(f"{url}#/agent/{agent}")
        w.page.wait_for_function(
            "() => document.querySelectorAll('#agent-rewards tr').length === 3"
        )
        acts = w.page.eval_on_selector_all(
            "#agent-actions li[data-seq]", "els => els.map(e => +e.dataset.seq)"
        )
        mine = _log(
            run,
            "SELECT seq FROM events WHERE actor = ? AND seq <= ? AND kind IN"
            " ('post_created', 'dm_sent', 'followed', 'unfollowed') ORDER BY seq",
            agent,
            hi,
        )
        assert acts == [s for (s,) in mine] and acts
        assert w.errors == []


def test_a_page_opened_before_the_run_learns_its_agents(tmp_path: Path, watched: Any) -> None:
    """The page read ``api/run`` (the agents) once and then polled ``api/status``: opened on an
    empty directory before ``friendsim run`` wrote into it, as the view invites, it never knew
    an agent, so the network stayed empty (no caption at all) and no agent page opened. It reads
    ``api/run`` again until it knows the run's agents, whose personas the agent pages then show
    as a page opened on the finished run does (the agents' registration rows, streamed before
    ``api/run`` named them, stopped those reads: the pages showed a few group attributes)."""
    cfg = write_config(tmp_path / "cfg.toml", rounds=3, agents=6)
    run = tmp_path / "run"
    run.mkdir()
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_selector("#status")
        proc = run_cli("run", str(cfg), "--out", str(run), "--quiet")
        assert proc.returncode == 0, proc.stderr[-3000:]
        w.page.wait_for_function(
            "() => document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=60_000,
        )
        assert w.page.locator("#network circle").count() == 6
        w.page.click("#network a[href='#/agent/a01'] circle")
        w.page.wait_for_selector("#agent:not([hidden])")
        w.page.wait_for_function(
            "() => document.querySelector('#agent-persona').textContent.includes('lambdas')",
            timeout=30_000,
        )
        persona = w.page.inner_text("#agent-persona")
        later = watched()
        later.page.goto(f"{url}#/agent/a01")
        later.page.wait_for_selector("#agent:not([hidden])")
        assert later.page.inner_text("#agent-persona") == persona
        assert "description" in persona and "dominant" in persona
        assert w.errors == [] and later.errors == []


def test_agents_who_join_during_the_run_are_drawn_and_have_a_page(
    tmp_path: Path, watched: Any
) -> None:
    """The page's agents come from ``api/run`` (the persona file and the manifest), which an
    agent added by an ``add_agents`` intervention is in neither of: the network left joiners
    out and their pages had no persona. The page learns them from their registration rows."""
    cfg = write_config(tmp_path / "cfg.toml", rounds=3, agents=6)
    cfg.write_text(
        cfg.read_text() + '[[interventions]]\nkind = "add_agents"\nwindow = 2\ncount = 2\n'
    )
    run = tmp_path / "run"
    proc = run_cli("run", str(cfg), "--out", str(run), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    registered = {
        a for (a,) in _log(run, "SELECT actor FROM events WHERE kind = ?", "agent_registered")
    }
    known = set(httpx_agents(run))
    joiners = sorted(registered - known)
    assert len(registered) == 8 and len(joiners) == 2  # what the page cannot learn from api/run
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=60_000,
        )
        drawn = w.page.eval_on_selector_all(
            "#network a[href^='#/agent/']",
            "els => els.map(e => decodeURIComponent(e.getAttribute('href').slice(8)))",
        )
        assert sorted(drawn) == sorted(registered)
        w.page.click(f"#network a[href='#/agent/{joiners[0]}'] circle")
        w.page.wait_for_selector("#agent:not([hidden])")
        assert joiners[0] in (w.page.text_content("#agent-title") or "")
        assert "dominant" in (w.page.text_content("#agent-persona") or "")
        assert w.errors == []


def httpx_agents(run: Path) -> list[str]:
    """The agents ``api/run`` names for ``run`` (served once, read, stopped)."""
    with background("serve", str(run), "--port", "0") as (_, url):
        return list(httpx.get(f"{url}api/run", timeout=30).json()["agents"])


def test_an_agent_page_shows_the_rows_logged_just_after_it_was_read(
    tmp_path: Path, watched: Any
) -> None:
    """An agent's page reads its rows from ``api/rows``, again at most every 2 s while rows
    arrive. Rows logged within 2 s of a read (a run's last ones) were never read: with nothing
    else arriving the page was not built again, and it missed them for good. The page now reads
    them once the 2 s are up."""
    run = finished_run(tmp_path, rounds=6, agents=6)
    acts = "('post_created', 'dm_sent', 'followed', 'unfollowed')"
    mine = f"SELECT count(*) FROM events WHERE actor = 'a01' AND kind IN {acts}"
    (total,) = _log(run, mine)[0]
    (cut,) = _log(
        run,
        "SELECT start_seq FROM (SELECT min(seq) AS start_seq FROM events WHERE"
        " kind = 'window_started' AND json_extract(payload, '$.window') = 6)",
    )[0]
    (before,) = _log(run, mine + " AND seq < ?", cut)[0]
    assert 0 < before < total
    later = _cut(run, cut)
    with background("serve", str(run), "--port", "0") as (_, url):
        w = watched()
        w.page.goto(f"{url}#/agent/a01")
        w.page.wait_for_function(
            f"() => document.querySelectorAll('#agent-actions li.item').length === {before}",
            timeout=60_000,
        )
        con = sqlite3.connect(run / "events.db")
        try:
            con.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", later)
            con.commit()
        finally:
            con.close()
        w.page.wait_for_function(
            f"() => document.querySelectorAll('#agent-actions li.item').length === {total}",
            timeout=20_000,
        )
        assert w.page.locator("#agent-rewards tr").count() == 1 + 6
        assert w.errors == []


class Outage:
    """Answers the page's requests whose URL ``matches`` with a 503 while ``down`` is set
    (counting them), as a server restarting behind a proxy does; the others reach the server."""

    def __init__(self, page: Any, matches: Any) -> None:
        self.down = True
        self.failed: list[str] = []
        page.route(matches, self._handle)

    def _handle(self, route: Any) -> None:
        if self.down:
            self.failed.append(route.request.url)
            route.fulfill(status=503, content_type="text/plain", body="unavailable")
        else:
            route.continue_()


def page_errors(w: Any) -> list[str]:
    """The page's console errors other than Chromium's own line for each 503 it was answered."""
    return [e for e in w.errors if "status of 503" not in e]


def test_rows_the_page_could_not_read_are_read_again(tmp_path: Path, watched: Any) -> None:
    """A window the page has let go of, and an agent's page, are read from ``api/rows``; a read
    that failed (a 503, the server briefly away) was read again only when more rows arrived, so
    on a finished run the agent's page stayed empty and the window "loading…" for good. A failed
    read is tried again, backing off, while its view is shown (not once the user has left it),
    and the view says it is retrying meanwhile."""
    run = finished_run(tmp_path, rounds=10, agents=30)
    acts = "('post_created', 'dm_sent', 'followed', 'unfollowed')"
    mine = f"SELECT count(*) FROM events WHERE actor = 'a01' AND kind IN {acts} AND seq < ?"
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        windows = httpx.get(f"{url}api/windows", timeout=30).json()["windows"]
        w = watched()
        outage = Outage(w.page, lambda u: "/api/rows" in u)
        w.page.goto(f"{url}#/agent/a01")
        w.page.wait_for_function(
            "() => document.querySelector('#agent-status').textContent.includes('retrying')",
            timeout=60_000,
        )
        assert outage.failed and w.page.locator("#agent-actions li").count() == 0
        # leave the agent's page while its rows cannot be read: they are not asked for again
        w.page.goto(f"{url}#/")
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')"
            " && S.remote['agent-rows'].timer === null && !S.remote['agent-rows'].pending",
            timeout=60_000,
        )
        agent_reads = sum("agent=a01" in u for u in outage.failed)
        # window 1 of the overview, long gone from the page's rows
        w.page.eval_on_selector(
            "#scrubber", "e => { e.value = '1'; e.dispatchEvent(new Event('input')); }"
        )
        w.page.wait_for_function(
            "() => document.querySelector('#timeline-caption').textContent.includes('retrying')",
            timeout=30_000,
        )
        wait_for_page(w.page, lambda: sum("from=" in u for u in outage.failed) >= 3)
        assert sum("agent=a01" in u for u in outage.failed) == agent_reads
        outage.down = False
        w.page.wait_for_function(
            "() => document.querySelector('#timeline-caption').textContent"
            " === 'window 1, newest first'",
            timeout=30_000,
        )
        seqs = w.page.eval_on_selector_all(
            "#timeline li[data-seq]", "els => els.map(e => +e.dataset.seq)"
        )
        assert seqs and min(seqs) == windows[0]["start_seq"]
        assert max(seqs) == windows[1]["start_seq"] - 1
        # its page up to window 1, the window shown
        (up_to_1,) = _log(run, mine, windows[1]["start_seq"])[0]
        assert up_to_1 > 0
        w.page.goto(f"{url}#/agent/a01")
        w.page.wait_for_function(
            f"() => document.querySelectorAll('#agent-actions li.item').length === {up_to_1}",
            timeout=30_000,
        )
        assert w.page.text_content("#agent-status") == ""
        assert page_errors(w) == []


def wait_for_page(page: Any, predicate: Any, timeout: float = 30) -> None:
    """Wait for ``predicate`` (of what route handlers record) while the page's events run."""
    for _ in range(int(timeout * 10)):
        if predicate():
            return
        page.wait_for_timeout(100)
    raise AssertionError("timed out waiting for the page")


def test_window_digests_the_page_could_not_read_are_read_again(
    tmp_path: Path, watched: Any
) -> None:
    """The page reads the windows' digests (the network, the reward curves) from
    ``api/windows`` when it opens and when a window ends; a read that failed was not tried
    again, so a finished run's page showed "no window has closed yet" for good. A failed read
    is tried again, backing off, and the network's caption says it is retrying meanwhile."""
    run = finished_run(tmp_path, rounds=3, agents=6)
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w = watched()
        outage = Outage(w.page, lambda u: "/api/windows" in u)
        w.page.goto(url)
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')"
            " && document.querySelector('#network-caption').textContent.includes('retrying')",
            timeout=60_000,
        )
        assert outage.failed
        outage.down = False
        w.page.wait_for_function(
            "() => document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=30_000,
        )
        assert "retrying" not in (w.page.text_content("#network-caption") or "")
        curves = w.page.eval_on_selector_all(
            "#rewards polyline", "els => els.map(e => e.getAttribute('points').split(' ').length)"
        )
        assert curves == [3] * 6
        assert page_errors(w) == []


def test_a_page_whose_first_read_of_the_run_failed_reads_it_again(
    tmp_path: Path, watched: Any
) -> None:
    """The page starts by reading ``api/run`` (the run and its agents); when that read failed
    (a 503, the server briefly away) the page stopped there for good: no rows, no views, the
    badge at "connecting…". It is tried again, backing off, the badge saying "retrying"."""
    run = finished_run(tmp_path, rounds=3, agents=6)
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w = watched()
        outage = Outage(w.page, lambda u: u.endswith("/api/run"))
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'retrying'"
            " && document.querySelector('#notes').textContent.includes('503')",
            timeout=60_000,
        )
        assert outage.failed
        outage.down = False
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')"
            " && document.querySelector('#status').textContent === 'completed'"
            " && document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=30_000,
        )
        assert w.page.locator("#network circle").count() == 6
        assert page_errors(w) == []


def test_a_log_stream_answered_with_an_error_is_opened_again(tmp_path: Path, watched: Any) -> None:
    """The browser opens an ``EventSource`` again by itself after a network error, but not
    after an answer that is not an event stream (a 503 from the server or a proxy in front of
    it): the page's one stream was closed for good, and the page showed no row of the run.
    It opens the stream again, backing off, from the row after the last it has, saying so."""
    run = finished_run(tmp_path, rounds=3, agents=6)
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        w = watched()
        outage = Outage(w.page, lambda u: "/events/stream" in u)
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#counts').textContent.includes('reconnecting')",
            timeout=60_000,
        )
        assert outage.failed
        outage.down = False
        w.page.wait_for_function(
            f"() => document.querySelector('#counts').textContent.startsWith('{last} events')"
            " && !document.querySelector('#counts').textContent.includes('reconnecting')"
            " && document.querySelector('#network-caption').textContent"
            ".startsWith('after window 3:')",
            timeout=30_000,
        )
        seqs = w.page.eval_on_selector_all(
            "#timeline li[data-seq]", "els => els.map(e => +e.dataset.seq)"
        )
        assert seqs == sorted(set(seqs), reverse=True) and seqs[0] == last
        assert page_errors(w) == []


def test_a_sweep_page_whose_read_failed_reads_it_again(tmp_path: Path, watched: Any) -> None:
    """The sweep page reads ``api/sweep`` when it opens, then every 5 s while the sweep runs; a
    read that failed (a 503, the server briefly away) ended those reads for good: the page
    stayed at "loading…", or stopped following a running sweep. A failed read is tried again,
    backing off, the badge saying "retrying" meanwhile."""
    from test_sweep_aggregate import build_sweep_dir

    with ThreadPoolExecutor(1) as pool:  # Playwright's sync API owns this thread's event loop
        sweep = pool.submit(build_sweep_dir, tmp_path / "sweep", reps=1, windows=2).result()
    with background("serve", str(sweep), "--port", "0") as (_, url):
        data = httpx.get(f"{url}api/sweep", timeout=60).json()
        w = watched()
        outage = Outage(w.page, lambda u: u.endswith("/api/sweep"))
        w.page.goto(url)
        w.page.wait_for_function(
            "() => document.querySelector('#status').textContent === 'retrying'", timeout=60_000
        )
        assert outage.failed
        outage.down = False
        w.page.wait_for_selector("#runs a.run-link", timeout=30_000)
        assert w.page.text_content("#status") == str(data["status"])
        rows = w.page.eval_on_selector_all(
            "#runs tr[data-status]", "els => els.map(e => e.dataset.status)"
        )
        assert rows == [r["status"] for r in data["runs"]]
        assert page_errors(w) == []


STREAMS = """window.__streams = [];
const Plain = window.EventSource;
window.EventSource = class extends Plain {
  constructor(url, init) {
    super(url, init);
    const s = { url: String(url), events: 0 };
    window.__streams.push(s);
    this.addEventListener("message", () => { s.events++; });
  }
};"""
"""Records each stream the page opens and the number of events it received."""


def test_the_page_shows_the_same_from_the_batched_stream(tmp_path: Path, watched: Any) -> None:
    """The page reads the log as ``events/stream?batch=1`` (many rows per event, one JSONL line
    each; an event per row cost the browser more than the rows themselves) and shows exactly
    what it showed reading one event per row: the same page built from the default stream (its
    script served with the query parameter taken out) has the same text and rows."""
    run = finished_run(tmp_path, rounds=10, agents=30)
    script = (ROOT / "friendsim" / "serve" / "static" / "app.js").read_text()
    assert script.count("batch=1&") == 1
    per_row = script.replace("batch=1&", "")
    shown: dict[str, Any] = {}
    with background("serve", str(run), "--port", "0") as (_, url):
        last = httpx.get(f"{url}api/run", timeout=30).json()["last_seq"]
        for name in ("batched", "per_row"):
            w = watched()
            w.page.add_init_script(STREAMS)
            if name == "per_row":
                w.page.route(
                    "**/static/app.js",
                    lambda route: route.fulfill(
                        status=200, content_type="text/javascript; charset=utf-8", body=per_row
                    ),
                )
            w.page.goto(url)
            w.page.wait_for_function(
                f"() => document.querySelector('#counts').textContent"
                f".startsWith('{last} events') && document.querySelector('#counts').textContent"
                ".includes('10 windows closed') && document.querySelector('#network-caption')"
                ".textContent.startsWith('after window 10:')",
                timeout=60_000,
            )
            shown[name] = w.page.evaluate(
                """() => ({
                  text: document.body.innerText,
                  seqs: [...document.querySelectorAll('#timeline li[data-seq]')]
                    .map(e => +e.dataset.seq),
                  circles: document.querySelectorAll('#network circle').length,
                  streams: window.__streams,
                })"""
            )
            assert w.errors == []
    batched, plain = shown["batched"], shown["per_row"]
    assert [s["url"] for s in batched["streams"]] == ["events/stream?batch=1&from=1"]
    assert [s["url"] for s in plain["streams"]] == ["events/stream?from=1"]
    assert plain["streams"][0]["events"] == last > 1000
    assert 1 < batched["streams"][0]["events"] < last // 10
    assert batched["seqs"] and batched["seqs"][0] == last and batched["circles"] > 0
    assert {k: v for k, v in batched.items() if k != "streams"} == {
        k: v for k, v in plain.items() if k != "streams"
    }
