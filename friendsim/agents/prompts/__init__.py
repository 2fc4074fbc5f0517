"""Prompt templates (``*.txt``, :class:`string.Template` syntax), loaded by ``agents.prompting``."""
