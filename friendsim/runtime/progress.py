"""Progress for ``friendsim run``: windows k/K, actions, votes, failures, retries, spend, time.

Spend is the ledger's cost, or spent-of-limit when the run has a budget.

Written to stderr (stdout stays free for machine-readable output). On a terminal,
:class:`RichProgress` draws one line that fits 80 columns (window k/K and the elapsed time are
never elided) and is re-rendered several times a second from the run's LLM
:class:`~friendsim.llm.accounting.Ledger` and the running window tally, so it moves with every
completed model call and applied wake, not only at window boundaries. When stderr is not a
terminal, :class:`PlainProgress` writes one plain log line per window instead.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.text import Text

from friendsim.llm.accounting import Ledger
from friendsim.llm.budget import Budget
from friendsim.runtime.engine import RunListener, WindowTally


def _elapsed(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class _Counts:
    """Totals over finished windows plus the running one, and the ledger's LLM figures."""

    def __init__(self, ledger: Ledger, budget: Budget | None = None) -> None:
        self.ledger = ledger
        self.budget = budget
        self.done = {"actions": 0, "failures": 0, "votes": 0}
        self.current: WindowTally | None = None
        self.started = time.monotonic()

    def close_window(self, tally: WindowTally) -> None:
        for key in self.done:
            self.done[key] += getattr(tally, key)
        self.current = None

    def line(self) -> str:
        cur = self.current
        actions = self.done["actions"] + (cur.actions if cur else 0)
        votes = self.done["votes"] + (cur.votes if cur else 0)
        failures = self.done["failures"] + (cur.failures if cur else 0)
        total = self.ledger.total()
        retries = sum(total.retries.values())
        return (
            f"act {actions} vote {votes} fail {failures} "
            f"llm {total.calls} retry {retries} {self.spend(total.cost_usd)}"
        )

    def spend(self, cost_usd: float) -> str:
        """``$1.23``, or ``$1.23/5.00`` (spent of the budget) with a budget."""
        if self.budget is None:
            return f"${cost_usd:.2f}"
        return f"${self.budget.spent():.2f}/{self.budget.limit_usd:.2f}"


class _LiveStats(ProgressColumn):
    """Re-rendered on every refresh: the counts as they are now, then the elapsed time."""

    def __init__(self, counts: _Counts) -> None:
        super().__init__()
        self.counts = counts

    def render(self, task: Task) -> Text:
        return Text(f"{self.counts.line()} {_elapsed(time.monotonic() - self.counts.started)}")


class RichProgress(RunListener):
    """Run listener drawing one live line; use as a context manager around the run."""

    def __init__(
        self, ledger: Ledger, *, console: Console | None = None, budget: Budget | None = None
    ) -> None:
        self.ledger = ledger
        self.counts = _Counts(ledger, budget)
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("W {task.completed:.0f}/{task.total:.0f}"),
            BarColumn(bar_width=10),
            _LiveStats(self.counts),
            console=self.console,
            transient=False,
            refresh_per_second=4,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def run_started(self, *, windows: int, agents: int) -> None:
        self.task = self.progress.add_task("run", total=windows)

    def wake_applied(self, tally: WindowTally) -> None:
        self.counts.current = tally

    def window_ended(self, tally: WindowTally) -> None:
        self.counts.close_window(tally)
        if self.task is not None:
            self.progress.update(self.task, advance=1)


class PlainProgress(RunListener):
    """One plain line per window (for logs and pipes); use as a context manager like
    :class:`RichProgress`."""

    def __init__(
        self, ledger: Ledger, *, stream: TextIO | None = None, budget: Budget | None = None
    ) -> None:
        self.counts = _Counts(ledger, budget)
        self.stream = stream if stream is not None else sys.stderr
        self.windows = 0

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run_started(self, *, windows: int, agents: int) -> None:
        self.windows = windows
        self.stream.write(f"friendsim run: {agents} agents, {windows} windows\n")
        self.stream.flush()

    def wake_applied(self, tally: WindowTally) -> None:
        self.counts.current = tally

    def window_ended(self, tally: WindowTally) -> None:
        self.counts.close_window(tally)
        elapsed = _elapsed(time.monotonic() - self.counts.started)
        self.stream.write(
            f"friendsim run: window {tally.window}/{self.windows} {self.counts.line()} {elapsed}\n"
        )
        self.stream.flush()


def make_progress(ledger: Ledger, budget: Budget | None = None) -> RichProgress | PlainProgress:
    """A live line on a terminal, plain log lines otherwise."""
    if sys.stderr.isatty():
        return RichProgress(ledger, budget=budget)
    return PlainProgress(ledger, budget=budget)
