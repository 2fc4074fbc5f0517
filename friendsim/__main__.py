"""``python -m friendsim`` enters the command-line interface."""

from friendsim.cli import console

raise SystemExit(console())
