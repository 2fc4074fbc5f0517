"""friendsim: LLM agents on a synthetic social platform.

Coaching, behavioural rewards derived from the platform's event log, emergent social ties and
deterministic replay. Importing this package has no side effects: no logging set-up, no files,
no heavy imports.
"""

__version__ = "0.1.0"
