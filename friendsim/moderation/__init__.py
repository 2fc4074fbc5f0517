"""Moderation: a service on the event bus, beside the coach, that reviews every public item.

One protocol (:class:`~.base.Moderator`), moderators in a registry open to other packages
(:data:`~.kinds.MODERATORS`, entry-point group ``friendsim.moderators``): a rule moderator
(VADER toxicity, keyword lists, thresholds, fact-check labels on items injected as false) and an
LLM moderator (validated output, re-asked, then a recorded failure). Decisions — remove, label,
downrank, shadowban, suspend for k windows — are ``ModerationDecided`` events; the platform
honours them when it serves feeds and admits actions. :func:`~.redrive.redrive_moderation`
re-runs a moderator over a recorded log without any model call.
"""
