"""The live view beside a run executed in this process (``friendsim run CONFIG --serve``).

:class:`ServedRun` owns the pause gate handed to the runtime (awaited between windows), a
:class:`~friendsim.serve.follow.BusNotifier` attached to the platform's bus once it is open (so
the page follows the run without any polling) and the uvicorn server, started before the run so
the page can be opened at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from friendsim.runtime.control import PauseGate, RunControl
from friendsim.serve.app import RunSource, ServeTarget
from friendsim.serve.follow import BusNotifier
from friendsim.serve.server import LiveServer

if TYPE_CHECKING:
    from friendsim.platform.service import Platform


class ServedRun:
    """Gate, notifier and server of one run directory written by this process."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8765,
        paused: bool = False,
    ) -> None:
        self.gate = PauseGate(paused=paused)
        self.control = RunControl(gate=self.gate, on_open=self.on_open)
        self.notifier = BusNotifier()
        source = RunSource(run_dir=Path(run_dir), notifier=self.notifier, gate=self.gate)
        self.server = LiveServer(
            ServeTarget(runs=[source], closers=[self.notifier]), host=host, port=port
        )

    async def start(self) -> str:
        """Start the server; returns its URL."""
        return await self.server.start()

    async def on_open(self, platform: Platform) -> None:
        """The run's platform is open: follow its bus."""
        self.notifier.attach(platform.bus)

    async def stop(self) -> None:
        await self.server.stop()
