"""Sweeps: replications x a grid of config overrides, run in parallel, aggregated with 95 % CIs.

``config`` (the ``[sweep]`` table), ``runner`` (parallel runs into ``<out>/<cell>/rep<k>``),
``aggregate`` (mean and Student-t interval per cell) (``friendsim sweep`` is :mod:`friendsim.commands.sweep`).
"""
