"""Sweeps: replications x a grid of config overrides, run in parallel, aggregated with 95 % CIs.

``config`` (the ``[sweep]`` table), ``runner`` (parallel runs into ``<out>/<cell>/rep<k>``),
``execute`` (one replication into its folder, as both executors run it), ``ray_executor``,
``aggregate`` (mean and Student-t interval per cell) (``friendsim sweep`` is :mod:`friendsim.commands.sweep`).
"""
