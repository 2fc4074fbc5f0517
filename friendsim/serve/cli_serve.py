"""``friendsim serve DIR [--host 127.0.0.1] [--port 8765]``: the live view of a run or sweep.

Follows the run's log live while another process writes it, and shows a finished run the same
way. Binds 127.0.0.1 unless told otherwise; never writes to DIR. Ctrl-C or SIGTERM stop it.

Exit codes: 0 stopped, 2 DIR is not a run or sweep directory, the port is taken or the ``serve``
extra is missing (the message says which).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "serve",
        help="live web view of a run (while it runs or after) or of a sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", type=Path, help="run directory (events.db) or sweep directory")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")
    p.set_defaults(handler=handle)


async def _serve(args: argparse.Namespace) -> None:
    from friendsim.serve.app import open_target
    from friendsim.serve.server import LiveServer, announce

    target = open_target(args.dir)
    server = LiveServer(target, host=args.host, port=args.port)
    url = await server.start()
    announce(url, str(args.dir))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(server.stop()))
    await server.wait()


def handle(args: argparse.Namespace) -> int:
    """Serve ``args.dir`` until interrupted; returns the exit code."""
    from friendsim.analysis.analyze import RunDirectoryError
    from friendsim.serve.server import ServeDependencyError

    if not 0 <= args.port <= 65535:
        sys.stderr.write(f"friendsim serve: --port {args.port}: expected 0..65535\n")
        return 2
    try:
        asyncio.run(_serve(args))
    except (RunDirectoryError, ServeDependencyError) as exc:
        sys.stderr.write(f"friendsim serve: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"friendsim serve: cannot listen on {args.host}:{args.port}: {exc}\n")
        return 2
    except KeyboardInterrupt:
        pass
    return 0
