"""Structured logs (structlog) to stderr, configured by entry points only: the command line and
the sweep's worker processes. Never called at import, so a library user's logging is untouched."""

from __future__ import annotations

import logging
import sys

import structlog


def configure_logging(level: str) -> None:
    """structlog to stderr at ``level`` (``debug``, ``info``, ``warning`` or ``error``)."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
