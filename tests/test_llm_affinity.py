"""Endpoint fleets: an endpoints file, per-agent affinity over three real HTTP servers, failover
with no lost request when one server dies, and the ``[llm] endpoints_file`` config key."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from pathlib import Path

import pytest
from llm_stub_server import StubLLMServer, StubReply

from friendsim.agents.asking import ask_validated
from friendsim.llm.base import Completion, LLMRequest, user
from friendsim.llm.endpoints import EndpointsFileError, load_endpoints, parse_endpoints
from friendsim.llm.errors import ProviderStoppedError
from friendsim.llm.pool import PooledLLM
from friendsim.llm.registry import create_llm
from friendsim.llm.stack import build_llm
from friendsim.runtime.config import ConfigError, load_config, uses_fleet

AGENTS = [f"u{k:02d}" for k in range(24)]


def _agents_seen(server: StubLLMServer) -> dict[str, int]:
    """How many requests of each agent the server received (the agent id is the message)."""
    seen: dict[str, int] = defaultdict(int)
    for r in server.requests:
        if r.path.endswith("/chat/completions"):
            seen[r.body["messages"][-1]["content"].split()[0]] += 1
    return dict(seen)


async def _round(llm: object, k: int) -> list[Completion]:
    async def one(agent: str) -> Completion:
        req = LLMRequest(
            system=f"persona of {agent}", messages=(user(f"{agent} round {k}"),), agent=agent
        )
        return await llm.complete(req)  # type: ignore[attr-defined]

    return await asyncio.gather(*(one(a) for a in AGENTS))


async def test_agents_stick_to_one_server_and_fail_over_without_loss(tmp_path: Path) -> None:
    servers = [StubLLMServer().start() for _ in range(3)]
    try:
        fleet = tmp_path / "servers.txt"
        fleet.write_text(
            "# three stub servers\n"
            f"{servers[0].openai_base_url}  weight=1\n"
            f"{servers[1].openai_base_url}  weight=1 max_concurrency=4\n"
            f"{servers[2].openai_base_url}\n"
        )
        provider = create_llm(
            "openai:stub-model",
            endpoints=load_endpoints(fleet),
            cooldown_s=600.0,
            max_cooldown_s=600.0,
        )
        assert isinstance(provider, PooledLLM)
        stack = await build_llm(provider, concurrency=16, retries=3)
        for k in range(3):
            answers = await _round(stack, k)
            assert [a.text for a in answers] == [f"echo: {a} round {k}" for a in AGENTS]
        before = [_agents_seen(s) for s in servers]
        # every agent on exactly one server, all 3 of its requests there; all servers used
        for agent in AGENTS:
            homes = [i for i, seen in enumerate(before) if agent in seen]
            assert len(homes) == 1, (agent, homes)
            assert before[homes[0]][agent] == 3
            assert provider.home_of(agent) == servers[homes[0]].openai_base_url
        assert all(seen for seen in before), [len(s) for s in before]

        victim = max(range(3), key=lambda i: len(before[i]))
        moved = sorted(before[victim])
        servers[victim].stop()
        for k in range(3, 6):
            answers = await _round(stack, k)
            # no lost request: every agent got its own answer
            assert [a.text for a in answers] == [f"echo: {a} round {k}" for a in AGENTS]
        after = [
            {
                a: n - before[i].get(a, 0)
                for a, n in _agents_seen(s).items()
                if n > before[i].get(a, 0)
            }
            for i, s in enumerate(servers)
        ]
        assert after[victim] == {}
        for agent in AGENTS:
            homes = [i for i in range(3) if agent in after[i]]
            assert len(homes) == 1, (agent, homes)  # still one server per agent
            assert after[homes[0]][agent] == 3
            if agent not in moved:  # agents of healthy servers did not move
                assert agent in before[homes[0]]
        assert provider.rehomed == len(moved)
        assert provider.failovers >= 1
        assert servers[victim].openai_base_url not in provider.healthy()
        await stack.aclose()
    finally:
        for s in servers:
            s.stop()


async def test_failovers_are_counted_as_the_requests_they_send() -> None:
    """A pool member's 429 or 500 moves the call to another member: the manifest's attempts are
    the requests the servers received, and the moves are retries by their cause (they were
    missing: attempts counted only the retry layer's tries, and retries said none)."""
    servers = [StubLLMServer().start() for _ in range(2)]
    try:
        for s in servers:
            s.enqueue(StubReply(status=429, headers={"retry-after": "0"}), StubReply(status=500))
        provider = create_llm(
            "openai:stub-model", base_urls=[s.openai_base_url for s in servers], cooldown_s=0.01
        )
        assert isinstance(provider, PooledLLM)
        stack = await build_llm(provider, concurrency=1, retries=3)
        for k in range(6):
            answer = await stack.complete(
                LLMRequest(messages=(user(f"u{k} asks"),), agent=f"u{k}", label="plan")
            )
            assert answer.text == f"echo: u{k} asks"
            await asyncio.sleep(0.02)  # past the cool-down: both members healthy again
        total = stack.ledger.total()
        assert provider.failovers >= 1
        assert total.calls == 6 and not total.failures
        assert total.attempts == sum(len(s.requests) for s in servers) == 10
        assert dict(total.retries) == {"429": 2, "5xx": 2}
        await stack.aclose()
    finally:
        for s in servers:
            s.stop()


async def test_a_member_rejecting_the_model_is_named_alone_when_the_run_stops() -> None:
    """One server of a fleet without the model: the breaker's line names that server (it named
    every endpoint of the pool, leaving the user to find the broken one among them)."""
    missing = StubReply(status=404, body={"error": {"message": "The model `m` does not exist."}})
    with StubLLMServer() as good, StubLLMServer(fault=missing) as bad:
        provider = create_llm("openai:m", base_urls=[good.openai_base_url, bad.openai_base_url])
        stack = await build_llm(provider, concurrency=4, retries=1, breaker_threshold=3)
        asked = [stack.complete(LLMRequest(messages=(user(f"{a} asks"),), agent=a)) for a in AGENTS]
        outcomes = await asyncio.gather(*asked, return_exceptions=True)
        await stack.aclose()
    stopped = [e for e in outcomes if isinstance(e, ProviderStoppedError)]
    assert stopped and bad.requests
    line = str(stopped[0])
    assert f"endpoint {bad.openai_base_url}," in line and good.openai_base_url not in line
    assert "HTTP 404" in line


async def test_agent_id_travels_through_ask_validated_and_is_not_in_the_cache_key() -> None:
    seen: list[LLMRequest] = []

    class Recorder:
        model = "rec"

        async def complete(self, request: LLMRequest) -> Completion:
            seen.append(request)
            return Completion(text="hello", model="rec")

        async def aclose(self) -> None:
            return None

    asked = await ask_validated(
        Recorder(),
        stage="content",
        system="s",
        prompt="p",
        parse=lambda c: c.text,
        json_schema=None,
        label="content",
        agent="u07",
    )
    assert asked.value == "hello" and seen[0].agent == "u07"
    plain = LLMRequest(system="s", messages=(user("p"),))
    tagged = LLMRequest(system="s", messages=(user("p"),), agent="u07")
    assert plain.cache_key("m") == tagged.cache_key("m")
    assert "agent" not in json.dumps(tagged.to_json())


def test_endpoints_file_errors_name_file_and_line(tmp_path: Path) -> None:
    good = parse_endpoints("http://a:8000/v1 weight=2 max_concurrency=8\n\nhttp://b/v1 # b\n")
    assert [(e.url, e.weight, e.max_concurrency) for e in good] == [
        ("http://a:8000/v1", 2.0, 8),
        ("http://b/v1", 1.0, None),
    ]
    for text, message in (
        ("ftp://a\n", "f.txt:1: 'ftp://a' is not an http"),
        ("http://a\nhttp://a\n", "f.txt:2: http://a is listed twice"),
        ("http://a weight=0\n", "f.txt:1: weight must be a positive number"),
        ("http://a max_concurrency=x\n", "f.txt:1: max_concurrency must be an integer"),
        ("http://a colour=red\n", "f.txt:1: unknown setting 'colour'"),
        ("http://a 3\n", "f.txt:1: '3' is not key=value"),
        ("# nothing\n", "f.txt: lists no endpoint"),
    ):
        with pytest.raises(EndpointsFileError) as info:
            parse_endpoints(text, source="f.txt")
        assert message in str(info.value)
    cfg = tmp_path / "exp.toml"
    cfg.write_text('[llm]\nprovider = "openai:m"\nendpoints_file = "fleet.txt"\n')
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert info.value.key == "[llm].endpoints_file" and "not found" in str(info.value)
    (tmp_path / "fleet.txt").write_text("http://x:1/v1 weight=-1\n")
    with pytest.raises(ConfigError, match=r"fleet.txt:1: weight"):
        load_config(cfg)
    (tmp_path / "fleet.txt").write_text("http://x:1/v1\nhttp://y:1/v1\n")
    loaded = load_config(cfg)
    assert loaded.endpoints_path(tmp_path) == tmp_path / "fleet.txt"
    assert uses_fleet("openai:m") and not uses_fleet("openai:http://z/v1#m")
    assert not uses_fleet("anthropic:claude-haiku-4-5")
