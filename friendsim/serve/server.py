"""Run the live view's ASGI app on uvicorn, alone or beside a running experiment.

uvicorn and starlette are the optional ``serve`` extra, imported only here and in
:func:`friendsim.serve.app.build_app`, with an install hint when missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator
from typing import Any

from friendsim.serve.app import ServeTarget, build_app

INSTALL_HINT = "the live view needs the serve extra: pip install 'friendsim[serve]'"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ServeDependencyError(ImportError):
    """starlette or uvicorn is missing (the message says how to install them)."""


def require_serve_deps() -> None:
    """Raise :class:`ServeDependencyError` (with the install hint) if the extra is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ServeDependencyError(f"{INSTALL_HINT} ({exc})") from None


def allowed_hosts(host: str) -> list[str] | None:
    """Host headers accepted: the bound address and loopback names; any for a wildcard bind."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return sorted({host.strip("[]"), *(h.strip("[]") for h in LOOPBACK), host})


def _server_class() -> Any:
    """uvicorn's Server without its own signal handling: the caller's loop owns SIGINT/SIGTERM
    (a run must stop gracefully first; uvicorn would otherwise replace those handlers)."""
    import uvicorn

    class _Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return _Server


class LiveServer:
    """A uvicorn server on ``host:port`` (0 = any free port) serving ``target``.

    ``url`` is the address announced: ``host`` and the port bound; an empty ``host`` (every
    interface) is named by the address bound, ``0.0.0.0``, as that bind itself would be.
    """

    def __init__(self, target: ServeTarget, *, host: str = "127.0.0.1", port: int = 8765) -> None:
        require_serve_deps()
        import uvicorn

        self.host = host
        app = build_app(target, allowed_hosts=allowed_hosts(host))
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=1,
        )
        self._server = _server_class()(config)
        self._task: asyncio.Task[Any] | None = None

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))  # OSError here: port taken, bad address
        except OSError:
            self._sock.close()
            raise
        self._sock.set_inheritable(True)
        bound, port = self._sock.getsockname()[:2]
        shown = host or bound  # "" binds every interface: name the address bound (0.0.0.0)
        shown = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{shown}:{port}/"

    async def start(self) -> str:
        """Start serving in this event loop; returns the URL once the socket listens."""
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError(f"the live view could not start on {self.url}")
            await asyncio.sleep(0.01)  # startup only: uvicorn exposes no started event
        return self.url

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._sock.close()

    async def wait(self) -> None:
        """Until the server stops."""
        if self._task is not None:
            await asyncio.shield(self._task)


def announce(url: str, what: str) -> None:
    sys.stdout.write(f"friendsim: live view of {what} at {url}\n")
    sys.stdout.flush()
