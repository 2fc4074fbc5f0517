"""Replay tools: verify a log, re-run a run from recorded answers, re-drive subscribers over an
old log, resume a killed run and fork a run at a window boundary. The command is
:mod:`friendsim.commands.replay`.

Submodules are imported by their users (they pull in the runtime); the errors they raise live in
:mod:`friendsim.rundir.errors`.
"""
