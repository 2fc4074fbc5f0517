"""A record/replay cache of LLM answers in SQLite, keyed by ``LLMRequest.cache_key(model)``.

Modes:
- ``off``: pass-through (the stack builder simply leaves this wrapper out).
- ``record``: always call the model and store (overwrite) its answer.
- ``replay``: answer only from the cache; a miss raises :class:`CacheMissError` naming the
  request. Never calls the model, so a run can be re-executed offline and deterministically.
- ``read_through``: answer from the cache when present, else call the model and store.

Only the request (system, messages, schema, sampling settings), the answer and its usage are
stored: never headers, endpoints or keys. Identical requests share one answer; give requests
that must be independent samples distinct ``seed`` values.
Concurrent identical misses in ``read_through`` mode are coalesced into one model call.

Failures are recorded too (``record`` and ``read_through``): a call that the layers below
fail for good (its retries spent) leaves a :class:`RecordedFailure` (the error's class, its
message with secrets redacted, its HTTP status) in table ``llm_failures``, committed before the
error is raised, so before the run can log the failure. A run that re-derives a recorded log
(a resume, a fork) reproduces such a failure instead of asking again
(:class:`~friendsim.runtime.recorded_prefix.RecordedFailures`). The table is created by the first
failure: a cache whose calls all succeeded is the same file as before failures were recorded.

Answers that came through a provider batch API (billed at batch prices) are listed in table
``llm_batch_answers`` (created by the first one), and come back from the cache marked ``batch``,
so what a replayed answer cost when it was recorded (the ledger's ``replayed_cost_usd``, which a
resumed run's budget counts) is its batch price, not the live one.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import aiosqlite

from friendsim.llm.base import LLM, Completion, LLMRequest, Usage
from friendsim.llm.errors import (
    STOPS_THE_RUN,
    CacheMissError,
    LLMError,
    PermanentLLMError,
    ProviderConfigError,
    TransientLLMError,
)
from friendsim.llm.redact import redact_text

_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    request_json TEXT NOT NULL,
    text TEXT NOT NULL,
    parsed_json TEXT,
    usage_json TEXT NOT NULL,
    provider TEXT NOT NULL,
    answer_model TEXT NOT NULL,
    latency_s REAL NOT NULL
)
"""

_FAILURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_failures (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    label TEXT NOT NULL,
    error TEXT NOT NULL,
    message TEXT NOT NULL,
    status INTEGER
)
"""

_BATCH_ANSWERS_SCHEMA = "CREATE TABLE IF NOT EXISTS llm_batch_answers (key TEXT PRIMARY KEY)"

_READ_BATCH = 500  # keys per SELECT ... IN (...); below SQLite's parameter limit
_INSERT = "INSERT OR REPLACE INTO llm_cache VALUES (?,?,?,?,?,?,?,?,?,?)"
_INSERT_FAILURE = "INSERT OR REPLACE INTO llm_failures VALUES (?,?,?,?,?,?)"
_NOT_RECORDED = STOPS_THE_RUN
"""Errors that are no call's outcome (a replay's miss, bad configuration, an open breaker): a
run stops on them and never logs them as a failure, so there is nothing to reproduce."""


def _error_classes(base: type[LLMError] = LLMError) -> dict[str, type[LLMError]]:
    """Every loaded subclass of ``base`` (and ``base``) by ``module.qualname``."""
    found = {f"{base.__module__}.{base.__qualname__}": base}
    for sub in base.__subclasses__():
        found.update(_error_classes(sub))
    return found


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedFailure:
    """A call that failed for good: the error's class (``module.qualname``), its message (secrets
    redacted) and its HTTP status (``None``: none)."""

    error: str
    message: str
    status: int | None = None

    @classmethod
    def of(cls, exc: LLMError) -> RecordedFailure:
        kind = type(exc)
        status = getattr(exc, "status", None)
        return cls(
            error=f"{kind.__module__}.{kind.__qualname__}",
            message=redact_text(str(exc)),
            status=status if isinstance(status, int) else None,
        )

    def to_error(self) -> LLMError:
        """The failure as an error again: of the recorded class, with ``str()`` the recorded
        message, so whoever turns it into an ``action_failed`` writes what it wrote the first
        time (its class name and message). Made without the class's ``__init__`` (whose
        arguments differ from class to class); a class no longer loaded becomes an
        :class:`LLMError` subclass of the same name."""
        kind = _error_classes().get(self.error)
        if kind is None:
            module, _, name = self.error.rpartition(".")
            kind = type(name, (LLMError,), {"__module__": module or __name__})
        exc = kind.__new__(kind, self.message)
        if isinstance(exc, TransientLLMError):
            exc.retry_after, exc.status = None, self.status
        elif isinstance(exc, PermanentLLMError):
            exc.status = self.status
        return exc


class CacheMode(StrEnum):
    OFF = "off"
    RECORD = "record"
    REPLAY = "replay"
    READ_THROUGH = "read_through"

    @classmethod
    def parse(cls, value: str | CacheMode) -> CacheMode:
        try:
            return cls(str(value).replace("-", "_"))
        except ValueError:
            raise ProviderConfigError(
                f"unknown cache mode {value!r}; expected one of {[m.value for m in cls]}"
            ) from None


class LLMCache:
    """The SQLite store. Open with :meth:`open`; close with :meth:`aclose`."""

    def __init__(self, db: aiosqlite.Connection, path: Path) -> None:
        self._db = db
        self.path = path
        self._batch: list[tuple[Any, ...]] = []
        self._batch_done: asyncio.Future[None] | None = None
        self._batch_marks: list[tuple[str, bool]] = []
        self._batch_answers: set[str] = set()  # keys whose answer came through a batch API
        self._writer: asyncio.Task[None] | None = None
        self._keys: set[str] = set()  # keys on disk: a miss costs no database round trip
        self._wanted: dict[str, asyncio.Future[tuple[Any, ...] | None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._failures: dict[str, RecordedFailure] = {}
        self._failures_table = False

    @classmethod
    async def open(cls, path: str | Path) -> LLMCache:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute(_SCHEMA)
        await db.commit()
        cache = cls(db, path)
        async with db.execute("SELECT key FROM llm_cache") as cur:
            cache._keys.update(row[0] for row in await cur.fetchall())
        async with db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_failures'"
        ) as cur:
            cache._failures_table = await cur.fetchone() is not None
        if cache._failures_table:
            async with db.execute("SELECT key, error, message, status FROM llm_failures") as cur:
                for key, error, message, status in await cur.fetchall():
                    cache._failures[key] = RecordedFailure(
                        error=error, message=message, status=status
                    )
        async with db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'llm_batch_answers'"
        ) as cur:
            if await cur.fetchone() is not None:
                async with db.execute("SELECT key FROM llm_batch_answers") as keys:
                    cache._batch_answers.update(row[0] for row in await keys.fetchall())
        return cache

    def has(self, key: str) -> bool:
        """Whether an answer for ``key`` is stored."""
        return key in self._keys

    def failure(self, key: str) -> RecordedFailure | None:
        """The recorded failure of the call ``key`` (``None``: none recorded)."""
        return self._failures.get(key)

    async def put_failure(
        self, key: str, model: str, request: LLMRequest, exc: LLMError
    ) -> RecordedFailure:
        """Record that the call ``key`` failed for good with ``exc``; returns once committed."""
        failure = RecordedFailure.of(exc)
        row = (key, model, request.label, failure.error, failure.message, failure.status)
        await asyncio.shield(self._write_failure(row))
        self._failures[key] = failure
        return failure

    async def _write_failure(self, row: tuple[Any, ...]) -> None:
        if not self._failures_table:
            await self._db.execute(_FAILURES_SCHEMA)
            self._failures_table = True
        await self._db.execute(_INSERT_FAILURE, row)
        await self._db.commit()

    async def get(self, key: str) -> Completion | None:
        """The stored answer for ``key`` (marked ``cached``), or ``None``.

        Lookups are batched like writes: keys asked for while a query runs are fetched
        together by the next one, so a replay of many concurrent calls costs few round trips.
        """
        if key not in self._keys:
            return None
        waiter = self._wanted.get(key)
        if waiter is None:
            waiter = self._wanted[key] = asyncio.get_running_loop().create_future()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read_batches())
        row = await asyncio.shield(waiter)
        if row is None:
            return None
        text, parsed_json, usage_json, provider, answer_model = row
        return Completion(
            text=text,
            model=answer_model,
            usage=Usage(**json.loads(usage_json)),
            parsed=None if parsed_json is None else json.loads(parsed_json),
            latency_s=0.0,
            cached=True,
            provider=provider,
            batch=key in self._batch_answers,
        )

    async def _read_batches(self) -> None:
        while self._wanted:
            keys = list(self._wanted)[:_READ_BATCH]
            waiters = [self._wanted.pop(k) for k in keys]
            try:
                rows = await self._db.execute_fetchall(
                    "SELECT key, text, parsed_json, usage_json, provider, answer_model "
                    f"FROM llm_cache WHERE key IN ({','.join('?' * len(keys))})",
                    keys,
                )
            except Exception as exc:
                for w in waiters:
                    w.set_exception(exc)
                    w.exception()  # mark retrieved: the waiter re-raises it
                continue
            found = {row[0]: tuple(row[1:]) for row in rows}
            for k, w in zip(keys, waiters, strict=True):
                w.set_result(found.get(k))

    async def put(self, key: str, model: str, request: LLMRequest, completion: Completion) -> None:
        """Store one answer; returns once it is committed.

        Writes are group-committed: rows that arrive while a commit is running go together in
        the next transaction, so many concurrent callers cost a few commits, not one each.
        """
        parsed = None if completion.parsed is None else _dumps(completion.parsed)
        row = (
            key,
            model,
            request.label,
            _dumps(request.to_json()),
            completion.text,
            parsed,
            _dumps(asdict(completion.usage)),
            completion.provider,
            completion.model,
            completion.latency_s,
        )
        if self._batch_done is None:
            self._batch_done = asyncio.get_running_loop().create_future()
        done = self._batch_done
        self._batch.append(row)
        self._batch_marks.append((key, completion.batch))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        await asyncio.shield(done)

    async def _write_batches(self) -> None:
        while self._batch:
            rows, done, marks = self._batch, self._batch_done, self._batch_marks
            self._batch, self._batch_done, self._batch_marks = [], None, []
            assert done is not None
            batched = {key for key, batch in marks if batch}
            unbatched = {key for key, batch in marks if not batch} & self._batch_answers
            try:
                await self._db.executemany(_INSERT, rows)
                if batched:
                    await self._db.execute(_BATCH_ANSWERS_SCHEMA)
                    await self._db.executemany(
                        "INSERT OR REPLACE INTO llm_batch_answers VALUES (?)",
                        [(key,) for key in sorted(batched)],
                    )
                if unbatched:  # ``record`` mode overwrote a batch answer with a live one
                    await self._db.executemany(
                        "DELETE FROM llm_batch_answers WHERE key = ?",
                        [(key,) for key in sorted(unbatched)],
                    )
                await self._db.commit()
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # mark retrieved: every waiter re-raises it
            else:
                self._keys.update(row[0] for row in rows)
                self._batch_answers = (self._batch_answers | batched) - unbatched
                done.set_result(None)

    async def count(self) -> int:
        """Number of stored answers (read from the database)."""
        async with self._db.execute("SELECT COUNT(*) FROM llm_cache") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def aclose(self) -> None:
        for task in (self._writer, self._reader):
            if task is not None:
                await task
        await self._db.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class CachingLLM:
    """Serves ``inner`` through an :class:`LLMCache` in the given mode.

    A call that ``inner`` fails (``record``, ``read_through``) is recorded
    (:meth:`LLMCache.put_failure`) before its error is raised; an open breaker, a replay's miss
    and a configuration error are not (no call failed). ``hits``, ``misses`` and ``stored``
    count what happened. Closing this wrapper closes the inner model and, when ``owns_cache``
    is true, the cache.
    """

    def __init__(
        self,
        inner: LLM,
        cache: LLMCache,
        mode: CacheMode | str = CacheMode.READ_THROUGH,
        *,
        owns_cache: bool = True,
    ) -> None:
        self.inner = inner
        self.cache = cache
        self.mode = CacheMode.parse(mode)
        self._owns_cache = owns_cache
        self._pending: dict[str, asyncio.Future[Completion]] = {}
        self.hits = 0
        self.misses = 0
        self.stored = 0

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        match self.mode:
            case CacheMode.OFF:
                return await self.inner.complete(request)
            case CacheMode.RECORD:
                return await self._call_and_store(request, request.cache_key(self.model))
            case CacheMode.REPLAY:
                key = request.cache_key(self.model)
                found = await self.cache.get(key)
                if found is None:
                    self.misses += 1
                    raise CacheMissError(key, request.label, _preview(request))
                self.hits += 1
                return found
            case CacheMode.READ_THROUGH:
                return await self._read_through(request)
        raise AssertionError(self.mode)  # pragma: no cover

    async def _read_through(self, request: LLMRequest) -> Completion:
        key = request.cache_key(self.model)
        pending = self._pending.get(key)
        if pending is not None:
            self.hits += 1
            return _as_cached(await asyncio.shield(pending))
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._pending[key] = future  # registered before any await: later twins wait on it
        try:
            found = await self.cache.get(key)
            if found is not None:
                self.hits += 1
                completion = found
            else:
                self.misses += 1
                completion = await self._call_and_store(request, key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, none is required
            raise
        else:
            future.set_result(completion)
            return completion
        finally:
            del self._pending[key]

    async def _call_and_store(self, request: LLMRequest, key: str) -> Completion:
        try:
            completion = await self.inner.complete(request)
        except _NOT_RECORDED:
            raise
        except LLMError as exc:
            await self.cache.put_failure(key, self.model, request, exc)
            raise
        await self.cache.put(key, self.model, request, completion)
        self.stored += 1
        return completion

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self._owns_cache:
                await self.cache.aclose()


def _as_cached(completion: Completion) -> Completion:
    return Completion(
        text=completion.text,
        model=completion.model,
        usage=completion.usage,
        parsed=completion.parsed,
        latency_s=0.0,
        cached=True,
        provider=completion.provider,
        batch=completion.batch,
    )


def _preview(request: LLMRequest) -> str:
    last = request.messages[-1].content if request.messages else request.system
    return last[:80]
