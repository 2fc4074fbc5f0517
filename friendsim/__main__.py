"""``python -m friendsim`` enters the command-line interface."""

from friendsim.cli import main

raise SystemExit(main())
