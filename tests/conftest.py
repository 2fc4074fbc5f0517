"""Shared test fixtures. API keys are removed so no test can reach a real service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

_KEY_VARS = (
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "ANTHROPIC_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "OPENAI_ORG_ID",
    "OPENAI_PROJECT_ID",
)


@pytest.fixture(autouse=True)
def _no_api_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _KEY_VARS:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(autouse=True)
def _analysis_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Analysis caches go to a per-session folder, never into ~/.cache."""
    monkeypatch.setenv("FRIENDSIM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """The CLI binds structlog to the ``sys.stderr`` of the moment (a test's captured stream,
    closed after that test); start and leave every test with structlog's defaults."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
