"""Batch mode: send the requests of a phase as one provider batch at half the price.

In rounds mode every phase is a barrier: the runtime waits for all of the phase's answers before
it applies anything, so nothing is lost by waiting for a batch. :class:`BatchingLLM` sits in the
stack just below the record/replay cache. Requests arriving within ``gather_s`` of each other
(wall time; it only shapes the batches, never the answers) are submitted together through a
:class:`BatchBackend` (OpenAI's Batch API: a JSONL file upload, ``batches.create``, ``retrieve``
and the output file; Anthropic's Message Batches: ``messages.batches.create``, ``retrieve`` and
``results``, both through the official SDKs). The batch is polled with exponential backoff and
each answer is decoded exactly as the live provider decodes it, so it goes through the same
validation and into the same record/replay cache.

Resumability: every submitted batch is written to a :class:`BatchJournal` (``llm_batches.db`` in
the run directory) with the cache keys of its requests *before* anyone waits on it. A run killed
while a batch is pending is resumed by deterministic re-execution; when the same requests come
again, their keys are found in the journal and the pending batch is polled instead of submitted
again. Failure: an item that errored, or every item of a batch that failed, expired or was
cancelled, falls back to a live call through the layers below (retries, limits).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest
from friendsim.llm.errors import LLMError, MalformedResponseError

_log = structlog.get_logger(__name__)
BatchState = Literal["pending", "ended", "failed"]


class BatchItemError(LLMError):
    """One request of a batch got no usable answer (errored, expired, missing)."""


class BatchBackend(Protocol):
    """One provider's batch API. Raw answers are decoded with :meth:`decode`."""

    name: str

    async def submit(self, items: Sequence[tuple[str, LLMRequest]]) -> str: ...

    async def poll(self, batch_id: str) -> BatchState: ...

    async def results(self, batch_id: str) -> dict[str, Any]:
        """Raw answers by custom id; an ``Exception`` value marks an item without one."""
        ...

    def decode(self, request: LLMRequest, raw: Any) -> Completion: ...


class BatchJournal:
    """Submitted batches and their request keys, in SQLite (survives a killed process)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS batches (batch_id TEXT PRIMARY KEY, backend TEXT NOT NULL,"
            " state TEXT NOT NULL, keys TEXT NOT NULL)"
        )
        self.pending: dict[str, str] = {}
        for batch_id, keys in self._conn.execute(
            "SELECT batch_id, keys FROM batches WHERE state = 'pending'"
        ):
            for key in json.loads(keys):
                self.pending[key] = batch_id

    def submitted(self, batch_id: str, backend: str, keys: Sequence[str]) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO batches VALUES (?, ?, 'pending', ?)",
            (batch_id, backend, json.dumps(list(keys))),
        )
        for key in keys:
            self.pending[key] = batch_id

    def finished(self, batch_id: str, state: str) -> None:
        self._conn.execute("UPDATE batches SET state = ? WHERE batch_id = ?", (state, batch_id))
        self.pending = {k: b for k, b in self.pending.items() if b != batch_id}

    def rows(self) -> list[tuple[str, str, str, list[str]]]:
        return [
            (b, be, s, json.loads(k))
            for b, be, s, k in self._conn.execute("SELECT * FROM batches ORDER BY rowid")
        ]

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True, kw_only=True, slots=True)
class PollPolicy:
    """Backoff between polls (wall seconds): ``first``, doubling up to ``most``."""

    first: float = 1.0
    most: float = 60.0
    gather_s: float = 0.25


class BatchingLLM:
    """Collects concurrent requests into provider batches (see the module docstring).

    ``inner`` answers live (fallback); ``checks`` are called before a new batch is submitted
    (a replay guard refusing live calls refuses batches too). ``before_live`` (when set) is
    called before a request falls back live, and may refuse it by raising (a spending budget
    that reserved the batch price: :class:`~friendsim.llm.budget.BudgetedLLM`).
    """

    def __init__(
        self,
        inner: LLM,
        backend: BatchBackend,
        journal: BatchJournal,
        *,
        poll: PollPolicy | None = None,
        checks: Sequence[Callable[[LLMRequest], None]] = (),
    ) -> None:
        self.inner = inner
        self.backend = backend
        self.journal = journal
        self.poll = poll or PollPolicy()
        self.checks = tuple(checks)
        self._queue: dict[str, tuple[LLMRequest, list[asyncio.Future[Completion]]]] = {}
        self._waiting: dict[str, dict[str, tuple[LLMRequest, list[asyncio.Future[Completion]]]]]
        self._waiting = {}
        self._flusher: asyncio.Task[None] | None = None
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._arrived = 0
        self.submitted = 0
        self.fallbacks = 0
        self.before_live: Callable[[LLMRequest], None] | None = None

    @property
    def model(self) -> str:
        return self.inner.model

    async def complete(self, request: LLMRequest) -> Completion:
        key = request.cache_key(self.model)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        batch_id = self.journal.pending.get(key)
        if batch_id is not None:
            self._waiting.setdefault(batch_id, {}).setdefault(key, (request, []))[1].append(future)
            self._ensure_poller(batch_id)
        else:
            for check in self.checks:
                check(request)
            self._queue.setdefault(key, (request, []))[1].append(future)
            self._arrived += 1
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
        try:
            return await asyncio.shield(future)
        except BatchItemError as exc:
            self.fallbacks += 1
            _log.info("llm_batch_fallback_live", error=str(exc), label=request.label)
            if self.before_live is not None:
                self.before_live(request)
            return await self.inner.complete(request)

    async def _flush(self) -> None:
        """Submit what has gathered once arrivals pause; repeat for requests that arrived while
        a submission was in flight (they would otherwise wait for a flush nobody starts)."""
        while self._queue:
            seen = -1
            while seen != self._arrived:
                seen = self._arrived
                await asyncio.sleep(self.poll.gather_s)
            items, self._queue = self._queue, {}
            await self._submit(items)

    async def _submit(
        self, items: dict[str, tuple[LLMRequest, list[asyncio.Future[Completion]]]]
    ) -> None:
        try:
            batch_id = await self.backend.submit([(k, r) for k, (r, _) in items.items()])
        except Exception as exc:
            _log.warning("llm_batch_submit_failed", backend=self.backend.name, error=repr(exc))
            self._fail(items, BatchItemError(f"batch submission failed: {exc}"))
            return
        self.journal.submitted(batch_id, self.backend.name, list(items))
        self.submitted += 1
        _log.info("llm_batch_submitted", batch_id=batch_id, requests=len(items))
        self._waiting.setdefault(batch_id, {}).update(items)
        self._ensure_poller(batch_id)

    def _ensure_poller(self, batch_id: str) -> None:
        task = self._pollers.get(batch_id)
        if task is None or task.done():
            self._pollers[batch_id] = asyncio.create_task(self._collect(batch_id))

    async def _collect(self, batch_id: str) -> None:
        delay = self.poll.first
        try:
            while (state := await self.backend.poll(batch_id)) == "pending":
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll.most)
            raw = await self.backend.results(batch_id) if state == "ended" else {}
        except Exception as exc:
            _log.warning("llm_batch_poll_failed", batch_id=batch_id, error=repr(exc))
            state, raw = "failed", {}
        self.journal.finished(batch_id, "collected" if state == "ended" else state)
        items = self._waiting.pop(batch_id, {})
        for key, (request, futures) in items.items():
            answer = raw.get(key)
            outcome: Completion | BaseException
            if answer is None:
                outcome = BatchItemError(f"batch {batch_id} ({state}) has no answer for {key[:12]}")
            elif isinstance(answer, BaseException):
                outcome = BatchItemError(f"batch {batch_id}: {answer}")
            else:
                try:
                    outcome = self.backend.decode(request, answer)
                except LLMError as exc:
                    outcome = BatchItemError(f"batch {batch_id}: {exc}")
            for f in futures:
                if f.done():
                    continue
                if isinstance(outcome, BaseException):
                    f.set_exception(outcome)
                else:
                    f.set_result(outcome)

    def _fail(
        self,
        items: Mapping[str, tuple[LLMRequest, list[asyncio.Future[Completion]]]],
        exc: BatchItemError,
    ) -> None:
        for _, futures in items.values():
            for f in futures:
                if not f.done():
                    f.set_exception(exc)

    async def aclose(self) -> None:
        for task in [self._flusher, *self._pollers.values()]:
            if task is not None and not task.done():
                task.cancel()
        await self.inner.aclose()


class OpenAIBatchBackend:
    """OpenAI's Batch API for one :class:`~friendsim.llm.openai_provider.OpenAIChatLLM`."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.name = llm.model

    def _mode(self, request: LLMRequest) -> Any:
        return self.llm.json_mode if request.json_schema is not None else None

    async def submit(self, items: Sequence[tuple[str, LLMRequest]]) -> str:
        lines = [
            json.dumps(
                {
                    "custom_id": key,
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": self.llm._request_kwargs(req, self._mode(req)),
                },
                ensure_ascii=False,
            )
            for key, req in items
        ]
        client = self.llm._client
        upload = await client.files.create(
            file=("requests.jsonl", ("\n".join(lines) + "\n").encode("utf-8")), purpose="batch"
        )
        batch = await client.batches.create(
            input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        return str(batch.id)

    async def poll(self, batch_id: str) -> BatchState:
        batch = await self.llm._client.batches.retrieve(batch_id)
        self._last = batch
        if batch.status in ("validating", "in_progress", "finalizing", "cancelling"):
            return "pending"
        if batch.status == "completed" or (batch.status == "expired" and batch.output_file_id):
            return "ended"
        return "failed"

    async def results(self, batch_id: str) -> dict[str, Any]:
        batch = await self.llm._client.batches.retrieve(batch_id)
        out: dict[str, Any] = {}
        if batch.output_file_id:
            content = await self.llm._client.files.content(batch.output_file_id)
            for line in content.text.split("\n"):
                if not line.strip():
                    continue
                row = json.loads(line)
                response = row.get("response") or {}
                if row.get("error") or response.get("status_code") != 200:
                    out[row["custom_id"]] = MalformedResponseError(
                        f"item failed: {row.get('error') or response.get('status_code')}"
                    )
                else:
                    out[row["custom_id"]] = response.get("body")
        return out

    def decode(self, request: LLMRequest, raw: Any) -> Completion:
        import openai

        from friendsim.llm.json_extract import extract_json
        from friendsim.llm.openai_provider import _read

        try:
            response = openai.types.chat.ChatCompletion.model_validate(raw)
        except Exception as exc:
            raise MalformedResponseError(f"openai batch: unreadable answer: {exc}") from exc
        text, usage = _read(response)
        parsed = extract_json(text) if request.json_schema is not None else None
        return Completion(
            text=text,
            model=self.llm._model,
            usage=usage,
            parsed=parsed,
            provider="openai",
            batch=True,
        )


class AnthropicBatchBackend:
    """Anthropic's Message Batches for one :class:`~friendsim.llm.anthropic_provider.AnthropicLLM`."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.name = llm.model

    def _params(self, request: LLMRequest) -> dict[str, Any]:
        params = self.llm._request_kwargs(request, self.llm.structured_output)
        params.update(params.pop("extra_body", {}))
        return dict(params)

    async def submit(self, items: Sequence[tuple[str, LLMRequest]]) -> str:
        batch = await self.llm._client.messages.batches.create(
            requests=[{"custom_id": key, "params": self._params(req)} for key, req in items]
        )
        return str(batch.id)

    async def poll(self, batch_id: str) -> BatchState:
        batch = await self.llm._client.messages.batches.retrieve(batch_id)
        return "ended" if batch.processing_status == "ended" else "pending"

    async def results(self, batch_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        async for item in await self.llm._client.messages.batches.results(batch_id):
            if item.result.type == "succeeded":
                out[item.custom_id] = item.result.message
            else:
                out[item.custom_id] = MalformedResponseError(f"item {item.result.type}")
        return out

    def decode(self, request: LLMRequest, raw: Any) -> Completion:
        from friendsim.llm.anthropic_provider import _usage

        text, parsed = self.llm._answer(raw, request, self.llm.structured_output)
        return Completion(
            text=text,
            model=self.llm._model,
            usage=_usage(raw),
            parsed=parsed,
            provider="anthropic",
            batch=True,
        )


def batch_backend_for(
    provider: LLM,
) -> tuple[BatchBackend, list[Callable[[LLMRequest], None]]] | None:
    """The batch backend of ``provider`` (looking through wrappers that expose ``inner``), and
    the ``check`` hooks of those wrappers; ``None`` when the provider has no batch API."""
    checks: list[Callable[[LLMRequest], None]] = []
    current: Any = provider
    while current is not None:
        kind = type(current).__name__
        if kind == "OpenAIChatLLM":
            return OpenAIBatchBackend(current), checks
        if kind == "AnthropicLLM":
            return AnthropicBatchBackend(current), checks
        check = getattr(current, "check", None)
        if callable(check):
            checks.append(check)
        current = getattr(current, "inner", None)
    return None


def spec_batches(spec: str, *, fleet: bool = False) -> bool:
    """Whether a run in batch mode sends ``spec``'s requests as provider batches, as
    :func:`batch_backend_for` decides on the provider built from it: an ``openai:`` spec with
    at most one URL and an ``anthropic:`` spec do; an endpoint pool (several URLs, or the
    ``[llm] endpoints_file`` that ``fleet`` says serves ``spec``), a ``local:`` model, the
    scripted fake and plug-in providers answer live."""
    from friendsim.llm.registry import parse_spec

    parsed = parse_spec(spec)
    if parsed.provider == "anthropic":
        return True
    if parsed.provider != "openai":
        return False
    return len(parsed.base_urls) == 1 or not (parsed.base_urls or fleet)
