"""A rich progress bar for ``friendsim run``: windows done, actions, failures, tokens, cost.

Written to stderr (stdout stays free for machine-readable output). It reads token usage and cost
from the run's LLM :class:`~friendsim.llm.accounting.Ledger` each time a wake is applied.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from friendsim.llm.accounting import Ledger
from friendsim.llm.budget import Budget
from friendsim.runtime.engine import RunListener, WindowTally


class RichProgress(RunListener):
    """Run listener drawing one progress bar; use as a context manager around the run."""

    def __init__(
        self, ledger: Ledger, *, console: Console | None = None, budget: Budget | None = None
    ) -> None:
        self.ledger = ledger
        self.budget = budget
        self.console = console or Console(stderr=True)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self.task: TaskID | None = None
        self._done = {"actions": 0, "failures": 0, "votes": 0}

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

    def _stats(self, tally: WindowTally | None) -> str:
        actions = self._done["actions"] + (tally.actions if tally else 0)
        failures = self._done["failures"] + (tally.failures if tally else 0)
        votes = self._done["votes"] + (tally.votes if tally else 0)
        total = self.ledger.total()
        tokens = total.usage.input_tokens + total.usage.output_tokens
        cached = total.usage.cached_input_tokens
        spend = f"${total.cost_usd:.4f}"
        if self.budget is not None:
            spend = f"${self.budget.spent():.4f} of ${self.budget.limit_usd:.2f} budget"
        return (
            f"actions {actions}  votes {votes}  failed {failures}  "
            f"tokens {tokens:,} ({cached:,} cached)  {spend}"
        )

    def run_started(self, *, windows: int, agents: int) -> None:
        self.task = self.progress.add_task(
            f"{agents} agents, windows", total=windows, stats=self._stats(None)
        )

    def wake_applied(self, tally: WindowTally) -> None:
        if self.task is not None:
            self.progress.update(self.task, stats=self._stats(tally))

    def window_ended(self, tally: WindowTally) -> None:
        self._done["actions"] += tally.actions
        self._done["failures"] += tally.failures
        self._done["votes"] += tally.votes
        if self.task is not None:
            self.progress.update(self.task, advance=1, stats=self._stats(None))
