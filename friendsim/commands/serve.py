"""``friendsim serve DIR``: the live web view of a run (while it is written or after) or a sweep.

Exit codes: 0 stopped, 2 DIR is not a run or sweep directory, the port is taken or the ``serve``
extra is missing (the message says which). Components are imported inside the handler.
"""

from __future__ import annotations

import argparse
import sys

from friendsim.commands._help import FORMATTER, Subparsers, add_log_level, path_arg, port_arg

DESCRIPTION = """\
Open a local web page that follows a run from its event log: the timeline of posts,
replies and messages, each agent's page, the tie network and the reward components
window by window. A run that is still being written is followed live; a finished
run can be stepped through window by window with the scrubber. A sweep directory
shows the list of its runs.

The page and its scripts are served from the package (it works offline). It binds
127.0.0.1 unless told otherwise and never writes to DIR. Ctrl-C stops it.
"""

EPILOG = """\
examples:
  friendsim serve runs/paper
  friendsim serve runs/sweep --port 9000

exit status: 0 stopped, 2 DIR is not a run or sweep directory, the port is taken,
or the serve extra is missing (pip install 'friendsim[serve]').
"""


def register(subparsers: Subparsers) -> None:
    """Add the ``serve`` sub-command to the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "serve",
        help="live web view of a run (while it runs or after) or of a sweep",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=FORMATTER,
    )
    p.add_argument(
        "dir", type=path_arg, help="a run directory (with events.db) or a sweep directory"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port",
        type=port_arg,
        default=8765,
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )
    add_log_level(p)
    p.set_defaults(handler=handle)


async def _serve(args: argparse.Namespace) -> None:
    import asyncio
    import signal

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
    import asyncio

    from friendsim.analysis.analyze import RunDirectoryError
    from friendsim.runtime.logs import configure_logging
    from friendsim.serve.server import ServeDependencyError

    configure_logging(args.log_level)
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
