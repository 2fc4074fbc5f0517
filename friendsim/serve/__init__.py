"""The live view: ``friendsim serve RUN_DIR`` and ``friendsim run CONFIG --serve``.

A small web app (starlette on uvicorn, the optional ``serve`` extra) that follows a run from its
event log, live while it is written and identically for a finished run:

* :mod:`.logfile` reads ``events.db`` strictly read-only (never writes to the run directory);
* :mod:`.follow` says when the log may have grown: a platform's bus inside the running process,
  a cheap ``stat`` watcher for a run written by another process;
* :mod:`.digest` turns the log into per-window figures (reward components, tie network, tips);
* :mod:`.app` holds the routes (Server-Sent Events, JSON, the page), :mod:`.static` the page's
  scripts and styles (shipped in the package: works offline), :mod:`.server` starts uvicorn,
  :mod:`.live` runs the view beside a run in this process (``run --serve``: bus notifier and
  pause gate), the ``serve`` sub-command is :mod:`friendsim.commands.serve`.
"""
