"""Typed platform errors.

Every rejected command raises a subclass of :class:`PlatformError` and changes nothing: no memory,
no disk, no sequence number consumed. ``code`` is a short machine-readable reason (callers record it
in ``ActionFailed.reason``); the message names what was wrong and where.
"""

from __future__ import annotations


class PlatformError(Exception):
    """Base of every platform error. ``code`` is stable; the message is for humans."""

    code: str = "platform_error"


class UnknownAgentError(PlatformError):
    code = "unknown_agent"


class DuplicateAgentError(PlatformError):
    code = "duplicate_agent"


class UnknownPostError(PlatformError):
    code = "unknown_post"


class UnknownMessageError(PlatformError):
    code = "unknown_message"


class SelfFollowError(PlatformError):
    code = "self_follow"


class DuplicateFollowError(PlatformError):
    code = "duplicate_follow"


class NotFollowingError(PlatformError):
    code = "not_following"


class SelfVoteError(PlatformError):
    code = "self_vote"


class InvalidVoteError(PlatformError):
    code = "invalid_vote"


class DuplicateVoteError(PlatformError):
    """A LIKE or DISLIKE action on an item the agent already votes on that way."""

    code = "duplicate_vote"


class SelfMessageError(PlatformError):
    code = "self_message"


class InvalidTextError(PlatformError):
    code = "invalid_text"


class UnknownMentionError(PlatformError):
    code = "unknown_mention"


class InvalidEventError(PlatformError):
    """A fully formed event (imported, recorded or replayed) contradicts the platform state."""

    code = "invalid_event"


class SchemaVersionError(PlatformError):
    """The database was written by a newer friendsim (its ``user_version`` is unknown here)."""

    code = "schema_too_new"


class PlatformClosedError(PlatformError):
    """The platform was closed, or a commit failed and it refuses further commands."""

    code = "platform_closed"


class InvalidTopicError(PlatformError):
    """A post topic is empty, or a stored topic is not in normalised form."""

    code = "invalid_topic"


class SuspendedAgentError(PlatformError):
    """The acting agent is suspended (or removed) in the current window."""

    code = "suspended"


class ModeratedPostError(PlatformError):
    """A feed would serve a removed post, or a shadowbanned author's post to someone else."""

    code = "moderated_post"
