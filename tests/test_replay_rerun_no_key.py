"""``friendsim replay RUN --rerun`` needs neither the run's API key nor its server.

A re-run answers every request from RUN's recorded answers (``cache = "replay"``) and sends
nothing, yet it used to build the run's hosted providers, which refuse to be made without their
key: whoever received a run directory could not re-run it without a key of the kind its author
had (exit 2, "environment variable ... is not set"). The runs here are made over real HTTP
against a stub on 127.0.0.1 (agents, an LLM coach and an LLM moderator on one provider), then
re-run through the command line with the key unset and the stub stopped. A fork still builds the
providers (it asks past its recorded prefix), so it still needs the key.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from llm_stub_server import StubLLMServer, StubReply, mind_responder

from friendsim.cli import main as cli_main
from friendsim.llm.base import LLMRequest, user
from friendsim.llm.errors import CacheMissError
from friendsim.llm.registry import create_llm, spec_model
from friendsim.llm.replay_only import ReplayOnlyLLM

KEY_ENV = "FRIENDSIM_RERUN_KEY"
KEY = "rerun-secret-0123456789abcdef"
HOSTED_ENV = (
    KEY_ENV,
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_BASE_URL",
)

TOML = """\
[experiment]
name = "rerun-no-key"
seed = 5
rounds = 2
n_actions = 1
[agents]
count = 4
policy = "llm"
[llm]
provider = "{provider}"
retries = 0
concurrency = 4
api_key_env = "{key_env}"
max_failure_share = 1.0
[coach]
enabled = true
kind = "llm"
[moderation]
enabled = true
kind = "llm"
"""

CASES = {
    "openai": ("openai", None),
    "anthropic": ("anthropic", None),
    "openai-degraded": ("openai", StubReply(status=409)),
}
"""Provider, and a fault the stub gives every 7th request (the run ends ``degraded``: its lost
requests fail again in the re-run from their recorded failures)."""


def manifest(run: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run / "manifest.json").read_text())
    return data


def no_hosted_env(mp: pytest.MonkeyPatch) -> None:
    for name in HOSTED_ENV:
        mp.delenv(name, raising=False)


@pytest.fixture(scope="module", params=sorted(CASES))
def recorded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run made with the key set against the stub, which is stopped afterwards."""
    kind, fault = CASES[request.param]
    folder = tmp_path_factory.mktemp(request.param)
    with (
        pytest.MonkeyPatch.context() as mp,
        StubLLMServer(responder=mind_responder(), fault=fault, fault_every=7) as stub,
    ):
        no_hosted_env(mp)
        mp.setenv(KEY_ENV, KEY)
        if kind == "openai":
            provider = f"openai:{stub.openai_base_url}#m"
        else:
            provider = "anthropic:claude-haiku-4-5"
            mp.setenv("ANTHROPIC_BASE_URL", stub.base_url)
        toml = folder / "run.toml"
        toml.write_text(TOML.format(provider=provider, key_env=KEY_ENV))
        code = cli_main(["run", str(toml), "--out", str(folder / "run"), "--quiet"])
        asked = len(stub.requests)
    made = manifest(folder / "run")
    assert code == (3 if fault else 0), made.get("stop_detail")
    assert made["status"] == ("degraded" if fault else "completed")
    assert made["coach_model"] == made["moderation_model"] == next(iter(made["models"].values()))
    labels = {e["label"] for e in made["llm_usage"]["by_key"] if e["attempts"] > 0}
    assert asked > 0 and labels == {"plan", "content", "vote", "coach", "moderation"}
    return folder / "run"


def test_a_rerun_needs_no_key_and_no_server(
    recorded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    no_hosted_env(monkeypatch)
    code = cli_main(["replay", str(recorded), "--rerun", "--out", str(tmp_path / "again")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["identical"] is True
    old, new = manifest(recorded), manifest(tmp_path / "again")
    assert new["log_sha256"] == old["log_sha256"] and new["rerun_of"]["identical"] is True
    assert new["status"] == old["status"]
    total = new["llm_usage"]["total"]
    assert total["cache_hits"] > 0 and total["attempts"] == 0


def test_a_fork_still_needs_the_key(
    recorded: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A fork builds the providers (it asks past its recorded prefix): without the key it is
    refused at once (exit 2) naming the variable, leaving nothing behind."""
    no_hosted_env(monkeypatch)
    toml = recorded.parent / "run.toml"
    argv = ["run", str(toml), "--fork", str(recorded), "--at", "1", "--out", str(tmp_path / "f")]
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert KEY_ENV in err and "not set" in err
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize(
    "spec",
    [
        "openai:gpt-4o-mini",
        "openai:http://127.0.0.1:9/v1#m",
        "openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1#some/model",
        "anthropic:claude-haiku-4-5",
    ],
)
def test_the_stand_in_has_the_name_the_provider_reports(
    spec: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorded answers are keyed by the provider's ``model``: the stand-in must report it
    exactly, and refuse every request as a replay's miss."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    request = LLMRequest(messages=(user("hello"),), label="plan")

    async def check() -> None:
        provider = create_llm(spec)
        try:
            assert spec_model(spec) == provider.model
        finally:
            await provider.aclose()
        stand_in = ReplayOnlyLLM(provider.model)
        with pytest.raises(CacheMissError, match="label='plan'") as info:
            await stand_in.complete(request)
        assert info.value.key == request.cache_key(provider.model)

    asyncio.run(check())


@pytest.mark.parametrize("spec", ["scripted", "local:smollm2"])
def test_providers_that_name_themselves_get_no_stand_in(spec: str) -> None:
    assert spec_model(spec) is None
