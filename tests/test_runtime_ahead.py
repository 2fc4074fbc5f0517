"""Feeds read ahead of their turn (:class:`friendsim.runtime.ahead.FeedsAhead`): reads queued
up to the depth, results logged strictly in order, reads never taken cancelled."""

from __future__ import annotations

import asyncio

import pytest

from friendsim.runtime.ahead import FeedsAhead


class _Reads:
    """Reads that wait until released, recording when each started and how many were open."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.open = 0
        self.most_open = 0
        self.cancelled: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    async def read(self, agent: str) -> str:
        self.started.append(agent)
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        gate = self.gates.setdefault(agent, asyncio.Event())
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(agent)
            raise
        finally:
            self.open -= 1
        if agent == "bad":
            raise RuntimeError("ranker failed for bad")
        return f"feed of {agent}"


async def test_reads_go_ahead_up_to_depth_and_are_logged_in_order() -> None:
    reads = _Reads()
    logged: list[tuple[str, str]] = []

    async def log(agent: str, feed: str) -> str:
        logged.append((agent, feed))
        return feed.upper()

    agents = [f"a{i}" for i in range(10)]
    ahead = FeedsAhead(agents, read=reads.read, log=log, depth=4)

    async def consume() -> list[str]:
        return [await ahead.take(a) for a in agents]

    consumer = asyncio.ensure_future(consume())
    await _settle()
    assert reads.started == agents[:4] and reads.open == 4
    for agent in reversed(agents):  # answers arrive in the reverse order of the reads
        reads.gates.setdefault(agent, asyncio.Event()).set()
        await _settle()
    got = await consumer
    assert got == [f"FEED OF {a}".upper() for a in agents]
    assert logged == [(a, f"feed of {a}") for a in agents]
    assert reads.started == agents
    assert reads.most_open == 4


async def test_a_read_waits_only_for_its_own_turn() -> None:
    reads = _Reads()
    ahead = FeedsAhead(["a", "b", "c"], read=reads.read, log=_echo, depth=2)
    first = asyncio.ensure_future(ahead.take("a"))
    await _settle()
    assert reads.started == ["a", "b"]  # the next read is queued while the first is awaited
    reads.gates["b"].set()
    await _settle()
    assert not first.done()
    reads.gates["a"].set()
    assert await first == "feed of a"
    assert reads.started == ["a", "b"]  # at most two at once, the one taken included
    assert await ahead.take("b") == "feed of b"
    await _settle()
    assert reads.started == ["a", "b", "c"]
    await ahead.aclose()
    assert reads.cancelled == ["c"]


async def test_out_of_turn_is_an_error_naming_both() -> None:
    ahead = FeedsAhead(["a", "b"], read=_instant, log=_echo, depth=2)
    with pytest.raises(ValueError, match=r"'b' asked out of turn \(next: 'a'\)"):
        await ahead.take("b")
    await ahead.aclose()
    with pytest.raises(ValueError, match="depth must be >= 1"):
        FeedsAhead(["a"], read=_instant, log=_echo, depth=0)


async def test_a_failed_read_raises_at_its_turn_and_close_cancels_the_rest() -> None:
    reads = _Reads()
    ahead = FeedsAhead(["ok", "bad", "c", "d"], read=reads.read, log=_echo, depth=3)
    for agent in ("ok", "bad", "c", "d"):
        reads.gates.setdefault(agent, asyncio.Event())
    reads.gates["ok"].set()
    reads.gates["bad"].set()
    assert await ahead.take("ok") == "feed of ok"
    with pytest.raises(RuntimeError, match="ranker failed for bad"):
        await ahead.take("bad")
    await _settle()
    assert reads.started == ["ok", "bad", "c", "d"]
    await ahead.aclose()
    assert sorted(reads.cancelled) == ["c", "d"]
    assert reads.open == 0
    with pytest.raises(ValueError, match="out of turn"):
        await ahead.take("c")


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def _instant(agent: str) -> str:
    return f"feed of {agent}"


async def _echo(agent: str, feed: str) -> str:
    return feed
