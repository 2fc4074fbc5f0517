"""The HTML report of a run or a sweep (``friendsim report DIR``): ``render`` builds the page,
``figures`` draws the PNGs (matplotlib Agg, imported lazily), the sub-command is
:mod:`friendsim.commands.report`."""
