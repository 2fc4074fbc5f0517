"""Bus: in-order delivery, catch-up hand-over without gap or duplicate, backpressure, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from friendsim.platform import Platform
from friendsim.platform.bus import EventBus
from friendsim.platform.events import Event, WindowEnded


async def _producer(
    p: Platform, n: int, *, flush_every: int, milestones: dict[int, asyncio.Event] | None = None
) -> None:
    for i in range(n):
        await p.record(WindowEnded(t=0.0, window=i))
        if i % flush_every == flush_every - 1:
            await p.flush()
            for seq, reached in (milestones or {}).items():
                if p.committed_seq >= seq:
                    reached.set()
            await asyncio.sleep(0)  # let consumers interleave with the producer
    await p.flush()


async def _collect(sub, out: list[int], stop_at: int) -> None:
    async with sub:
        async for e in sub:
            out.append(e.seq)
            if e.seq == stop_at:
                return


async def test_live_and_mid_stream_subscribers_see_everything_once(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "b.db", batch_size=64)
    n = 3000
    early: list[int] = []
    late: list[list[int]] = [[] for _ in range(4)]
    try:
        t_early = asyncio.create_task(_collect(p.bus.subscribe(name="early", maxsize=8), early, n))
        milestones = {(k + 1) * 500: asyncio.Event() for k in range(4)}
        producer = asyncio.create_task(_producer(p, n, flush_every=37, milestones=milestones))
        late_tasks = []
        for k in range(4):
            # join at different points mid-stream, each from seq 1, with small pages so the
            # catch-up reads several pages while the producer keeps publishing
            await milestones[(k + 1) * 500].wait()
            sub = p.bus.subscribe(name=f"late{k}", from_seq=1, maxsize=16, page=50)
            late_tasks.append(asyncio.create_task(_collect(sub, late[k], n)))
        await asyncio.wait_for(asyncio.gather(producer, t_early, *late_tasks), 30)
    finally:
        await p.close()
    expected = list(range(1, n + 1))
    assert early == expected
    for got in late:
        assert got == expected


async def test_subscribe_from_middle_and_future(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "m.db")
    for i in range(10):
        await p.record(WindowEnded(t=0.0, window=i))
    await p.flush()
    mid: list[int] = []
    fut: list[int] = []
    t1 = asyncio.create_task(_collect(p.bus.subscribe(name="mid", from_seq=7), mid, 15))
    t2 = asyncio.create_task(_collect(p.bus.subscribe(name="future", from_seq=13), fut, 15))
    await asyncio.sleep(0)
    for i in range(5):
        await p.record(WindowEnded(t=0.0, window=10 + i))
    await p.flush()
    await asyncio.wait_for(asyncio.gather(t1, t2), 10)
    await p.close()
    assert mid == list(range(7, 16))
    assert fut == [13, 14, 15]


async def test_backpressure_bounds_queue(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "bp.db", batch_size=10_000)
    sub = p.bus.subscribe(name="slow", from_seq=1, maxsize=5)
    it = aiter(sub)
    for i in range(50):
        await p.record(WindowEnded(t=0.0, window=i))
    await p.flush()  # nothing attached yet: publish returns at once
    first = await anext(it)  # catch-up, then attaches live
    assert first.seq == 1
    for i in range(50):
        await p.record(WindowEnded(t=0.0, window=50 + i))
    flush = asyncio.create_task(p.flush())
    await asyncio.sleep(0.05)
    # publisher is blocked: the queue never exceeds its bound
    assert not flush.done()
    assert 0 < sub.queued <= 5
    got = [first.seq]
    while len(got) < 100:
        got.append((await anext(it)).seq)
        assert sub.queued <= 5
    await asyncio.wait_for(flush, 5)
    assert got == list(range(1, 101))
    await sub.close()
    await p.close()


async def test_failing_subscriber_is_detached_others_unaffected(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "f.db")
    good: list[int] = []

    async def bad_handler(e: Event) -> None:
        if e.seq == 3:
            raise RuntimeError("boom at 3")

    async def good_handler(e: Event) -> None:
        good.append(e.seq)

    bad_sub = p.bus.subscribe(name="bad", maxsize=2)
    good_sub = p.bus.subscribe(name="good", maxsize=2)
    bad_task = asyncio.create_task(bad_sub.consume(bad_handler))
    good_task = asyncio.create_task(good_sub.consume(good_handler))
    await asyncio.sleep(0)
    for i in range(40):
        await p.record(WindowEnded(t=0.0, window=i))
        await p.flush()
    with pytest.raises(RuntimeError, match="boom"):
        await bad_task
    assert isinstance(bad_sub.error, RuntimeError)
    assert p.bus.failures == {"bad": bad_sub.error}
    assert bad_sub.closed and bad_sub not in p.bus.subscribers
    await p.close()  # ends the good subscription after everything was delivered
    await asyncio.wait_for(good_task, 5)
    assert good == list(range(1, 41))


async def test_exception_in_async_with_block_detaches(tmp_path: Path) -> None:
    p = await Platform.open(tmp_path / "g.db")
    sub = p.bus.subscribe(name="crashy", maxsize=1)

    async def consumer() -> None:
        async with sub:
            async for e in sub:
                if e.seq == 2:
                    raise ValueError("consumer bug")

    task = asyncio.create_task(consumer())
    for i in range(20):  # would block forever on a size-1 queue if the sub stayed attached
        await p.record(WindowEnded(t=0.0, window=i))
        await asyncio.wait_for(p.flush(), 5)
    with pytest.raises(ValueError):
        await task
    assert isinstance(sub.error, ValueError) and p.bus.failures["crashy"] is sub.error
    await p.close()


async def test_publish_rejects_out_of_order() -> None:
    async def read(_from: int, _limit: int) -> list[Event]:
        return []

    bus = EventBus(read)
    await bus.publish([WindowEnded(seq=1, t=0.0, window=1)])
    with pytest.raises(ValueError, match="already published"):
        await bus.publish([WindowEnded(seq=1, t=0.0, window=1)])


async def test_concurrent_producers_with_background_flushes(tmp_path: Path) -> None:
    """Several tasks issue commands at once; auto-flushes run in the background; a subscriber
    that joins from seq 1 half-way still sees every event exactly once, in order."""
    p = await Platform.open(tmp_path / "c.db", batch_size=16)
    n_tasks, per_task = 4, 400
    total = n_tasks * per_task
    halfway = asyncio.Event()

    async def producer(k: int) -> None:
        for i in range(per_task):
            await p.record(WindowEnded(t=0.0, window=k * per_task + i))
            if p.committed_seq >= total // 2:
                halfway.set()
            if i % 7 == 0:
                await asyncio.sleep(0)

    early: list[int] = []
    late: list[int] = []
    t_early = asyncio.create_task(_collect(p.bus.subscribe(name="early", maxsize=32), early, total))
    producers = [asyncio.create_task(producer(k)) for k in range(n_tasks)]
    await halfway.wait()
    t_late = asyncio.create_task(
        _collect(p.bus.subscribe(name="late", from_seq=1, maxsize=8, page=64), late, total)
    )
    await asyncio.gather(*producers)
    await p.flush()
    await asyncio.wait_for(asyncio.gather(t_early, t_late), 30)
    await p.close()
    assert early == late == list(range(1, total + 1))
    # every window number was logged once: the concurrent producers lost nothing
    windows = sorted(e.window for e in await _events(tmp_path / "c.db"))
    assert windows == list(range(total))


async def _events(path: Path) -> list[WindowEnded]:
    q = await Platform.open(path)
    try:
        return [e async for e in q.events() if isinstance(e, WindowEnded)]
    finally:
        await q.close()


async def test_next_batch_gives_the_same_events_as_iterating(tmp_path: Path) -> None:
    """Batches (one await per slice) hold exactly the events iteration yields, in order, also
    for a subscriber that catches up from the log mid-stream; an empty batch ends the stream."""
    p = await Platform.open(tmp_path / "nb.db", batch_size=64)
    n = 2000
    batches: list[list[int]] = []
    late_batches: list[list[int]] = []

    async def collect(sub, out: list[list[int]]) -> None:  # type: ignore[no-untyped-def]
        async with sub:
            while batch := await sub.next_batch():
                out.append([e.seq for e in batch])
                if batch[-1].seq == n:
                    break

    try:
        live = asyncio.create_task(collect(p.bus.subscribe(name="live", maxsize=256), batches))
        reached = {700: asyncio.Event()}
        producer = asyncio.create_task(_producer(p, n, flush_every=37, milestones=reached))
        await reached[700].wait()
        sub = p.bus.subscribe(name="late", from_seq=1, maxsize=64, page=100)
        late = asyncio.create_task(collect(sub, late_batches))
        await asyncio.wait_for(asyncio.gather(producer, live, late), 30)
        ended = p.bus.subscribe(name="ended", from_seq=n + 1)
        await p.bus.close()
        assert await ended.next_batch() == []
    finally:
        await p.close()
    expected = list(range(1, n + 1))
    for got in (batches, late_batches):
        assert [s for b in got for s in b] == expected
        assert all(b for b in got) and max(len(b) for b in got) > 1
