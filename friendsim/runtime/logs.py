"""Structured logging set-up for entry points: the command line and sweep worker processes.

Called explicitly by an entry point, never at import (importing friendsim has no side effects).
"""

from __future__ import annotations

import logging
import sys

import structlog

from friendsim.llm.redact import structlog_redactor


def configure_logging(level: str) -> None:
    """structlog to stderr at ``level`` (``debug``, ``info``, ``warning`` or ``error``); every
    value passes the redactor (:mod:`friendsim.llm.redact`), so no key reaches a log line."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog_redactor,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
