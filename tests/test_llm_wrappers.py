"""Concurrency cap, RPM/TPM limits, retries with backoff and the endpoint pool."""

from __future__ import annotations

import asyncio

import pytest

from friendsim.llm import (
    LLMConnectionError,
    LLMRequest,
    LLMTimeoutError,
    PermanentLLMError,
    RateLimitedError,
    ScriptedLLM,
    ServerError,
    user,
)
from friendsim.llm.limits import ConcurrencyLimitedLLM, RateLimitedLLM, TokenBucket
from friendsim.llm.pool import PooledLLM
from friendsim.llm.retry import RetryingLLM, RetryPolicy


def req(text: str = "hi", **kw: object) -> LLMRequest:
    return LLMRequest(messages=(user(text),), **kw)  # type: ignore[arg-type]


class FakeTime:
    """A manual clock whose sleep advances it and records each wait."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_concurrency_limit_caps_in_flight() -> None:
    inner = ScriptedLLM(default="x", latency_s=0.02)
    llm = ConcurrencyLimitedLLM(inner, 3)
    await asyncio.gather(*(llm.complete(req()) for _ in range(12)))
    assert llm.max_in_flight == 3 and llm.in_flight == 0 and len(inner.calls) == 12


def test_token_bucket_reserves_exact_waits() -> None:
    t = FakeTime()
    bucket = TokenBucket(rate=2.0, capacity=2.0, clock=t.clock)
    assert [bucket.reserve(1) for _ in range(4)] == [0.0, 0.0, 0.5, 1.0]
    t.now += 1.0
    assert bucket.reserve(1) == pytest.approx(0.5)
    bucket.refund(1)
    assert bucket.reserve(1) == pytest.approx(0.5)


async def test_rpm_limit_spaces_requests_without_polling() -> None:
    t = FakeTime()
    inner = ScriptedLLM(default="x")
    llm = RateLimitedLLM(inner, rpm=120, clock=t.clock, sleep=t.sleep)  # 2/s, burst 2
    for _ in range(6):
        await llm.complete(req())
    # Sequential calls: two free, then one every 0.5 s of (fake) time; each wait slept once.
    assert t.sleeps == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert llm.delayed_calls == 4 and len(inner.calls) == 6


async def test_tpm_limit_reserves_estimate_and_refunds_unused() -> None:
    t = FakeTime()
    inner = ScriptedLLM(default="ok")  # uses 1 prompt token + 1 output token
    llm = RateLimitedLLM(inner, tpm=6000, clock=t.clock, sleep=t.sleep)  # 100 tok/s, burst 100
    big = req(max_tokens=100)  # reserves 1 + 100 = 101 > burst 100 -> must wait ~0.01 s
    await llm.complete(big)
    assert t.sleeps == pytest.approx([0.01])
    # The call used 2 tokens, so 99 were refunded: the next identical call waits only for the
    # 2 used tokens plus its own 1-token excess (0.02 s), not for a full second.
    await llm.complete(big)
    assert t.sleeps[-1] == pytest.approx(0.02, abs=1e-6)


async def test_a_call_that_never_reached_the_provider_gives_its_reservation_back() -> None:
    """A refused connection sent nothing: the request and its tokens are not spent, so the
    next call goes out at once. A call that reached the provider (here a dropped connection,
    not ``unreachable``) keeps its reservation: the provider counted it."""
    t = FakeTime()
    inner = ScriptedLLM(
        [
            LLMConnectionError("refused", unreachable=True),
            LLMConnectionError("refused", unreachable=True),
            "ok",
            LLMConnectionError("reset"),
            "ok",
        ]
    )
    llm = RateLimitedLLM(inner, rpm=60, tpm=6000, clock=t.clock, sleep=t.sleep)  # 1 req/s
    for _ in range(2):
        with pytest.raises(LLMConnectionError):
            await llm.complete(req(max_tokens=50))
    assert (await llm.complete(req(max_tokens=50))).text == "ok"
    assert t.sleeps == [] and llm.unsent == 2 and llm.admitted == 3
    with pytest.raises(LLMConnectionError):
        await llm.complete(req(max_tokens=50))  # reached: charged, after a one-second wait
    assert t.sleeps == pytest.approx([1.0])
    await llm.complete(req(max_tokens=50))
    assert t.sleeps == pytest.approx([1.0, 1.0]) and llm.unsent == 2


async def test_retry_backoff_is_exponential_seeded_and_counted() -> None:
    def script() -> ScriptedLLM:
        return ScriptedLLM(
            [ServerError("a", status=500), LLMTimeoutError("b"), LLMConnectionError("c"), "done"]
        )

    waits: list[list[float]] = []
    for _ in range(2):
        t = FakeTime()
        llm = RetryingLLM(
            script(),
            RetryPolicy(max_retries=5, base_delay_s=1.0, jitter=0.5),
            seed=7,
            sleep=t.sleep,
        )
        out = await llm.complete(req())
        assert out.text == "done"
        assert llm.stats.retries == 3 and llm.stats.attempts == 4 and llm.stats.gave_up == 0
        assert dict(llm.stats.by_error) == {
            "ServerError": 1,
            "LLMTimeoutError": 1,
            "LLMConnectionError": 1,
        }
        waits.append(t.sleeps)
    assert waits[0] == waits[1]  # same seed, same jitter
    for k, w in enumerate(waits[0]):
        assert 0.5 * 2**k <= w <= 2**k


async def test_retry_honours_retry_after_and_gives_up() -> None:
    t = FakeTime()
    inner = ScriptedLLM([RateLimitedError("slow down", retry_after=3.25, status=429)] * 3)
    llm = RetryingLLM(inner, RetryPolicy(max_retries=2), sleep=t.sleep)
    with pytest.raises(RateLimitedError):
        await llm.complete(req())
    assert t.sleeps == [3.25, 3.25]
    assert llm.stats.gave_up == 1 and llm.stats.attempts == 3


async def test_permanent_errors_are_not_retried() -> None:
    t = FakeTime()
    inner = ScriptedLLM([PermanentLLMError("bad request"), "never"])
    llm = RetryingLLM(inner, sleep=t.sleep)
    with pytest.raises(PermanentLLMError):
        await llm.complete(req())
    assert llm.stats.retries == 0 and t.sleeps == [] and inner.remaining == 1


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError, match="jitter"):
        RetryPolicy(jitter=2.0)


async def test_pool_balances_by_outstanding_requests() -> None:
    slow = ScriptedLLM(default="slow", latency_s=0.2)
    fast = ScriptedLLM(default="fast", latency_s=0.01)
    pool = PooledLLM([slow, fast], names=["slow", "fast"])
    results = []
    for _ in range(5):  # staggered: the slow member stays busy, so the fast one gets the rest
        results.append(asyncio.create_task(pool.complete(req())))
        await asyncio.sleep(0.03)
    texts = [r.text for r in await asyncio.gather(*results)]
    assert texts == ["slow", "fast", "fast", "fast", "fast"]
    assert [m.outstanding for m in pool.members] == [0, 0]


async def test_pool_takes_failed_member_out_then_back_after_cooldown() -> None:
    t = FakeTime()
    bad = ScriptedLLM([LLMConnectionError("refused")], default="bad-back")
    good = ScriptedLLM(default="good")
    pool = PooledLLM([bad, good], names=["a", "b"], cooldown_s=5.0, clock=t.clock)
    first = await pool.complete(req())  # goes to a, fails, fails over to b at once
    assert first.text == "good" and pool.failovers == 1
    assert pool.healthy() == ["b"]
    for _ in range(3):
        assert (await pool.complete(req())).text == "good"
    assert len(bad.calls) == 1
    t.now += 5.0
    assert pool.healthy() == ["a", "b"]
    texts = {(await pool.complete(req())).text for _ in range(4)}
    assert texts == {"bad-back", "good"}


async def test_pool_all_down_reports_wait_until_first_recovers() -> None:
    t = FakeTime()
    a = ScriptedLLM([ServerError("500", status=500)], default="a")
    b = ScriptedLLM([RateLimitedError("429", retry_after=1.5, status=429)], default="b")
    pool = PooledLLM([a, b], cooldown_s=4.0, clock=t.clock)
    with pytest.raises(RateLimitedError):
        await pool.complete(req())  # a fails -> b fails -> nobody left
    with pytest.raises(LLMConnectionError) as info:
        await pool.complete(req())
    assert info.value.retry_after == pytest.approx(1.5)
    # Through the retry wrapper the wait is slept exactly once and the call then succeeds.
    llm = RetryingLLM(pool, sleep=t.sleep)
    assert (await llm.complete(req())).text == "b"
    assert t.sleeps == [pytest.approx(1.5)]


async def test_pool_cooldown_doubles_on_consecutive_failures() -> None:
    t = FakeTime()
    a = ScriptedLLM([ServerError("x", status=502), ServerError("x", status=502)], default="a")
    pool = PooledLLM([a], cooldown_s=1.0, clock=t.clock, failover=False)
    with pytest.raises(ServerError):
        await pool.complete(req())
    assert pool.members[0].down_until == pytest.approx(101.0)
    t.now = 101.0
    with pytest.raises(ServerError):
        await pool.complete(req())
    assert pool.members[0].down_until == pytest.approx(103.0)
    t.now = 103.0
    assert (await pool.complete(req())).text == "a"
    assert pool.members[0].consecutive_failures == 0


async def test_rate_limit_in_real_time_spaces_concurrent_calls() -> None:
    inner = ScriptedLLM(default="x")
    llm = RateLimitedLLM(inner, rpm=6000)  # 100/s, burst of one second = 100 calls
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.gather(*(llm.complete(req()) for _ in range(150)))
    elapsed = loop.time() - t0
    assert 0.45 <= elapsed < 2.0
    assert 45 <= llm.delayed_calls <= 50  # the bucket refills a little while calls arrive


async def test_backoff_sleep_holds_no_concurrency_slot() -> None:
    from friendsim.llm import build_llm

    inner = ScriptedLLM(
        lambda r: ServerError("x", status=500) if len(inner.calls) == 1 else r.messages[0].content
    )
    stack = await build_llm(inner, concurrency=1, retries=RetryPolicy(base_delay_s=0.2, jitter=0.0))
    a = asyncio.create_task(stack.complete(req("A")))
    await asyncio.sleep(0.05)
    b = asyncio.create_task(stack.complete(req("B")))
    assert (await a).text == "A" and (await b).text == "B"
    # B ran while A was backing off: A's retry came last.
    assert [c.messages[0].content for c in inner.calls] == ["A", "B", "A"]


async def test_cancelled_wait_gives_budget_back() -> None:
    t = FakeTime()
    gate = asyncio.Event()

    async def blocking_sleep(seconds: float) -> None:
        t.sleeps.append(seconds)
        await gate.wait()

    llm = RateLimitedLLM(ScriptedLLM(default="x"), rpm=60, clock=t.clock, sleep=blocking_sleep)
    await llm.complete(req())  # uses the one-request burst
    waiting = asyncio.create_task(llm.complete(req()))
    await asyncio.sleep(0)
    assert t.sleeps == [pytest.approx(1.0)]
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    t.now += 1.0  # one second later the refunded slot is free again: no wait at all
    await llm.complete(req())
    assert len(t.sleeps) == 1
