"""The command line's sub-commands, one module each (the top layer: it may import any component).

Every module exposes ``register(subparsers)``, which adds its parser and sets ``handler``
(``args -> exit code``). Modules import nothing heavy at import time: components are imported
inside the handlers, so ``friendsim --help`` stays fast.
"""
