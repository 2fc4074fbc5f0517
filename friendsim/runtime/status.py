"""How a run ends, told truthfully: its status, why it stopped, and the exit code that goes with it.

Statuses (``manifest.status``):

- ``completed`` -- every window ran and no decision was lost. The only exit code 0.
- ``degraded`` -- every window ran, but some model-backed decisions failed (recorded as
  ``action_failed``) within the failure budget ``[llm] max_failure_share``, or in a window that
  spent it before a resume carried the run past it (see ``failed``), or some decisions were
  lost to a policy that raised (a bug in its code), or coach guidance or moderation reviews were
  lost to provider errors or a plug-in's error (:data:`LOSSES`). Exit code 3. A model's invalid
  answers are its behaviour, not a loss: they do not degrade a run.
- ``interrupted`` -- stopped early and resumable with ``friendsim run --resume``: a stop request
  (SIGINT/SIGTERM, a caller's stop event), a spending budget, a provider that stayed down past its
  retries (circuit breaker). Exit code 130.
- ``failed`` -- stopped early by something resuming will not fix by itself: a provider that
  rejects the key, the model or the request, a window whose failures exceed the failure budget,
  a crash. Exit code 1 (the run directory keeps everything committed; fix the cause, then
  ``--resume``). The budget is checked once a window has ended (``WindowEnded`` committed), so
  the window that spent it is complete: a resume keeps it as recorded, its failures included,
  and does not judge it again (:meth:`~friendsim.runtime.engine.Engine.window_ended`); the
  windows after it are run and checked as usual. Its lost decisions stay lost, so the resumed
  run ends ``degraded`` at best, never ``completed``.

One mechanism stops a run on purpose: :class:`RunStopped` (``RunInterrupted`` for the resumable
stops, ``RunFailed`` for the others), raised at a safe point -- never inside a platform commit --
and carrying ``reason``, one word of :data:`StopKind`. The assembly writes ``status``,
``stop_reason`` and ``stop_detail`` (the message) into the manifest, then re-raises it; the
command line turns it into one line on stderr and :func:`exit_code`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

from friendsim import vocabulary
from friendsim.llm.errors import ProviderStoppedError

StopStatus = Literal["interrupted", "failed"]

StopKind = Literal[
    "stop", "budget", "provider_down", "provider_rejected", "failure_budget", "error"
]
"""Why a run stopped early (``manifest.stop_reason``):

``stop`` a stop was requested (SIGINT/SIGTERM or the caller's stop event); ``budget`` the next
call could take spending past ``[llm] budget_usd``; ``provider_down`` a provider failed call after
call past its retries (its circuit breaker opened), or was unreachable (its latest calls failing
past their retries) when a window spent the failure budget; ``provider_rejected`` a provider rejected the
key, the model or the request; ``failure_budget`` a window lost more than ``[llm]
max_failure_share`` of its model-backed decisions; ``error`` an unexpected error.
"""

STOP_KINDS: tuple[str, ...] = get_args(StopKind)

EXIT_CODES: dict[str, int] = {"completed": 0, "failed": 1, "degraded": 3, "interrupted": 130}
"""Exit code per final status; 2 is for bad input (nothing run)."""


class RunStopped(Exception):
    """A run stopped on purpose before its last window (see the module docstring)."""

    status: StopStatus = "failed"

    def __init__(self, message: str, *, reason: StopKind) -> None:
        super().__init__(message)
        self.reason: StopKind = reason
        self.message = message


class RunInterrupted(RunStopped):
    """A resumable stop: a stop request, a spending budget, a provider down past its retries."""

    status: StopStatus = "interrupted"

    def __init__(self, message: str = "stop requested", *, reason: StopKind = "stop") -> None:
        super().__init__(message, reason=reason)


class RunFailed(RunStopped):
    """A stop that resuming alone will not fix: a rejected provider, a spent failure budget."""

    status: StopStatus = "failed"


def exit_code(status: str) -> int:
    """The process exit code for a run's final ``status`` (only ``completed`` is 0)."""
    return EXIT_CODES.get(status, 1)


LOSSES: tuple[str, ...] = tuple(loss.name for loss in vocabulary.LOSSES)
"""The names of the manifest's ``totals`` that count what a run lost
(:data:`friendsim.vocabulary.LOSSES` says what each is and where it is recorded)."""


def finished_status(losses: Mapping[str, int]) -> Literal["completed", "degraded"]:
    """The status of a run that ran every window: ``degraded`` when it lost anything
    (``losses``: the counts of :data:`LOSSES`)."""
    return "degraded" if any(losses.get(k, 0) > 0 for k in LOSSES) else "completed"


def check_failure_budget(*, window: int, asked: int, failed: int, max_share: float) -> None:
    """Raise :class:`RunFailed` (``failure_budget``) when more than ``max_share`` of the
    ``asked`` model-backed decisions of ``window`` failed."""
    if asked <= 0 or failed <= max_share * asked:
        return
    raise RunFailed(
        f"window {window}: {failed} of {asked} model-backed decisions failed "
        f"({failed / asked:.0%} > [llm] max_failure_share {max_share:.0%}); "
        "see the action_failed events for the causes",
        reason="failure_budget",
    )


def provider_stop(exc: ProviderStoppedError) -> RunStopped:
    """The stop for an open circuit breaker: ``failed`` (``provider_rejected``) when the provider
    rejected the key, the model or the request, else ``interrupted`` (``provider_down``)."""
    if exc.fatal:
        return RunFailed(str(exc), reason="provider_rejected")
    return RunInterrupted(str(exc), reason="provider_down")
