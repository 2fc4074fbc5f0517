"""OpenAI Chat Completions through the official ``openai`` AsyncOpenAI client.

Serves api.openai.com and any OpenAI-compatible server (vLLM, Ollama, llama.cpp server) via
``base_url``; several URLs make a :class:`~friendsim.llm.pool.PooledLLM`.

Structured output degrades per endpoint, remembered for the endpoint's lifetime:
``json_schema`` (``response_format={"type": "json_schema", ...}``) → ``json_object`` →
``prompt`` (schema in the system prompt, JSON extracted from the text). A step down happens
when the server answers 400/422 (or 5xx: llama.cpp's server answers 500) to a request carrying
``response_format`` and its error
mentions ``response_format`` / ``json_schema`` / ``json_object`` (but is not an "invalid
schema" complaint, which is the caller's bug and stays a PermanentLLMError); the same call is then re-sent
at once in the next mode (not a retry: nothing transient happened).

Keys: for api.openai.com the key comes from ``OPENAI_API_KEY`` (the SDK's own lookup). For any
other base URL the key is read only from the variable named by ``api_key_env`` (default: none,
and a placeholder is sent) so that your OpenAI key is never sent to a third-party host.
Retries: the SDK client has ``max_retries=0``; :mod:`friendsim.llm.retry` retries.
Timeout: ``timeout_s`` bounds each HTTP request as a whole (connecting, sending and reading the
whole answer, on every path), so a server trickling out an answer times out as well
(:class:`~friendsim.llm.errors.LLMTimeoutError`, retried); a request whose connection could not
be opened in that time sent nothing: an unreachable
:class:`~friendsim.llm.errors.LLMConnectionError`, as a refused connection.
Cached prompt tokens come from ``usage.prompt_tokens_details.cached_tokens``.

HTTP path (``http_path``): ``"sdk"`` sends chat completions through the SDK client (httpx);
``"lean"`` through :class:`~friendsim.llm.http11.HTTP11Client`, a small HTTP/1.1 client on
asyncio protocols; ``"httpcore"`` through :class:`~friendsim.llm.lean_http.LeanHTTPClient`
(httpx's core on a free list of connections). On the two lean paths the body is built here and
the answer read from JSON: a fraction of the SDK's CPU per request, ``lean`` the smallest (see
BENCHMARKS.md). ``"auto"`` (default) keeps the SDK for api.openai.com (the hosted API's own
semantics) and for a server reached through a proxy (``HTTP(S)_PROXY``; httpx honours it), and
takes ``lean`` for every other base URL (vLLM, llama.cpp, Ollama ...). All paths send the same
body and give the same completions and the same error types. The SDK client (and the SDK's
import) is made on first use: batch mode and the ``sdk`` path use it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeGuard
from urllib.parse import urlsplit

import structlog

from friendsim.llm.base import LLM, Completion, LLMRequest, Usage
from friendsim.llm.connect_watch import WATCH, ConnectWatch, timeout_error, watch_request
from friendsim.llm.endpoints import Endpoint
from friendsim.llm.errors import MalformedResponseError, ProviderConfigError
from friendsim.llm.fastjson import dumps_body, floats_in, loads_envelope
from friendsim.llm.http11 import HTTP11Client
from friendsim.llm.http_reply import error_text, status_error
from friendsim.llm.json_extract import clean_text, extract_json
from friendsim.llm.pool import PooledLLM
from friendsim.llm.redact import register_key_env
from friendsim.llm.registry import model_id
from friendsim.llm.sdk_errors import map_sdk_error
from friendsim.llm.urls import sdk_endpoint, url_problem

if TYPE_CHECKING:
    import openai

    from friendsim.llm.lean_http import LeanHTTPClient

_log = structlog.get_logger(__name__)
JsonMode = Literal["json_schema", "json_object", "prompt"]
HttpPath = Literal["auto", "lean", "httpcore", "sdk"]
_NEXT_MODE: dict[JsonMode, JsonMode] = {"json_schema": "json_object", "json_object": "prompt"}
_FORMAT_WORDS = ("response_format", "json_schema", "json_object")
_PLACEHOLDER_KEY = "EMPTY"


class OpenAIChatLLM:
    """One model on one OpenAI(-compatible) endpoint as an :class:`LLM`."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 0,
        structured_output: JsonMode = "json_schema",
        strict_schema: bool = False,
        api_key_env: str | None = None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] | None = None,
        client: openai.AsyncOpenAI | None = None,
        http_path: HttpPath = "auto",
        max_connections: int = 1000,
    ) -> None:
        if structured_output not in ("json_schema", "json_object", "prompt"):
            raise ProviderConfigError(
                "openai structured_output must be 'json_schema', 'json_object' or 'prompt', "
                f"got {structured_output!r}"
            )
        if base_url is not None and (problem := url_problem(base_url)) is not None:
            raise ProviderConfigError(f"openai: {problem}")
        self._model = model
        self._timeout_s = timeout_s
        try:
            self.endpoint = sdk_endpoint(base_url, "OPENAI_BASE_URL", "https://api.openai.com/v1")
        except ValueError as exc:
            raise ProviderConfigError(f"openai: {exc}") from None
        self.json_mode: JsonMode = structured_output
        self.downgrades = 0
        self._strict = strict_schema
        self.key_env: str | None = None
        is_openai = base_url is None or urlsplit(base_url).hostname == "api.openai.com"
        self._is_openai = is_openai
        self._max_tokens_param = max_tokens_param or (
            "max_completion_tokens" if is_openai else "max_tokens"
        )
        if http_path not in ("auto", "lean", "httpcore", "sdk"):
            raise ProviderConfigError(
                f"openai http_path must be 'auto', 'lean', 'httpcore' or 'sdk', got {http_path!r}"
            )
        self._lean: HTTP11Client | LeanHTTPClient | None = None
        if client is None:
            kwargs: dict[str, Any] = {"max_retries": max_retries, "timeout": timeout_s}
            if base_url is not None:
                kwargs["base_url"] = base_url
            env = api_key_env or ("OPENAI_API_KEY" if is_openai else None)
            self.key_env = env
            if env is not None:
                register_key_env(env)
            if env is not None:
                key = os.environ.get(env)
                if not key:
                    raise ProviderConfigError(
                        f"openai: environment variable {env} is not set (needed for {self.endpoint})"
                    )
                kwargs["api_key"] = key
            else:
                kwargs["api_key"] = _PLACEHOLDER_KEY
            self._sdk_kwargs = kwargs
            if http_path == "auto":
                http_path = "sdk" if is_openai or _proxied(self.endpoint) else "lean"
            if http_path != "sdk":
                lean: type[HTTP11Client | LeanHTTPClient] = HTTP11Client
                if http_path == "httpcore":
                    from friendsim.llm.lean_http import LeanHTTPClient

                    lean = LeanHTTPClient
                self._lean = lean(
                    self.endpoint,
                    headers={
                        "authorization": f"Bearer {kwargs['api_key']}",
                        "accept": "application/json",
                        "user-agent": "friendsim",
                    },
                    timeout_s=timeout_s,
                    max_connections=max_connections,
                )
        self._sdk: openai.AsyncOpenAI | None = client

    @property
    def _client(self) -> openai.AsyncOpenAI:
        """The SDK client, made on first use (the lean path may never need it, and importing
        the SDK costs about a second of CPU)."""
        if self._sdk is None:
            import openai

            hooks = {"request": [watch_request]}
            self._sdk = openai.AsyncOpenAI(
                **self._sdk_kwargs, http_client=openai.DefaultAsyncHttpxClient(event_hooks=hooks)
            )
        return self._sdk

    @property
    def model(self) -> str:
        return model_id("openai", self._model)

    def _request_kwargs(self, request: LLMRequest, mode: JsonMode | None) -> dict[str, Any]:
        system = request.system
        if mode in ("json_object", "prompt") and request.json_schema is not None:
            schema = json.dumps(request.json_schema, ensure_ascii=False)
            system = (
                f"{system}\n\n" if system else ""
            ) + f"Answer with one JSON value only, no prose, matching this JSON schema:\n{schema}"
        messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": messages,
            "temperature": request.temperature,
            self._max_tokens_param: request.max_tokens,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.stop:
            kwargs["stop"] = list(request.stop[:4])  # the API takes at most 4
        match mode:
            case "json_schema":
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "response",
                        "schema": dict(request.json_schema or {}),
                        "strict": self._strict,
                    },
                }
            case "json_object" if self._is_openai:
                kwargs["response_format"] = {"type": "json_object"}
            case "json_object":
                # OpenAI-compatible servers (llama.cpp, vLLM) enforce a schema given here.
                kwargs["response_format"] = {
                    "type": "json_object",
                    "schema": dict(request.json_schema or {}),
                }
            case _:
                pass
        return kwargs

    def cap_in_flight(self, limit: int) -> HTTP11Client | None:
        """Hold a concurrency limit in the lean path's client, which hands a freed slot to the
        next request where the answer is read (:class:`~friendsim.llm.limits.CapsInFlight`);
        ``None`` on the other paths (the limit is then held above)."""
        if isinstance(self._lean, HTTP11Client):
            return self._lean.cap_in_flight(limit)
        return None

    @property
    def http_path(self) -> Literal["lean", "httpcore", "sdk"]:
        """The path chat completions take (see module docstring)."""
        if self._lean is None:
            return "sdk"
        return "lean" if isinstance(self._lean, HTTP11Client) else "httpcore"

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.perf_counter()
        if self._lean is not None:
            text, usage = await self._complete_lean(request)
        else:
            text, usage = await self._complete_sdk(request)
        parsed = extract_json(text) if request.json_schema is not None else None
        return Completion(
            text=text,
            model=self._model,
            usage=usage,
            parsed=parsed,
            latency_s=time.perf_counter() - started,
            provider="openai",
        )

    async def _complete_sdk(self, request: LLMRequest) -> tuple[str, Usage]:
        import openai

        while True:
            mode = self.json_mode if request.json_schema is not None else None
            watch = ConnectWatch()
            token = WATCH.set(watch)
            try:
                async with asyncio.timeout(self._timeout_s):  # httpx's timeouts are per read
                    response = await self._client.chat.completions.create(
                        **self._request_kwargs(request, mode)
                    )
                return _read(response)
            except (TimeoutError, openai.APITimeoutError):
                raise timeout_error("openai", watch, self.endpoint, self._timeout_s) from None
            except openai.BadRequestError as exc:
                if not self._downgrade(mode, str(exc)):
                    raise map_sdk_error(exc, openai, "openai") from exc
            except openai.UnprocessableEntityError as exc:
                if not self._downgrade(mode, str(exc)):
                    raise map_sdk_error(exc, openai, "openai") from exc
            except openai.InternalServerError as exc:
                if not self._downgrade(mode, str(exc)):
                    raise map_sdk_error(exc, openai, "openai") from exc
            except openai.OpenAIError as exc:
                raise map_sdk_error(exc, openai, "openai") from exc
            except ValueError as exc:  # a body that is not JSON at all
                raise MalformedResponseError(f"openai: undecodable response body: {exc}") from exc
            finally:
                WATCH.reset(token)

    async def _complete_lean(self, request: LLMRequest) -> tuple[str, Usage]:
        assert self._lean is not None
        while True:
            mode = self.json_mode if request.json_schema is not None else None
            body = dumps_body(self._request_kwargs(request, mode))
            reply = await self._lean.post_json("/chat/completions", body)
            if 200 <= reply.status < 300:
                return _read_json(reply.body)
            if reply.status in (400, 422) or reply.status >= 500:
                if self._downgrade(mode, error_text(reply)):
                    continue
            raise status_error("openai", reply)

    def _downgrade(self, mode: JsonMode | None, error: str) -> bool:
        """Step the endpoint's JSON mode down if the server's ``error`` rejects
        ``response_format``."""
        if mode is None or mode == "prompt":
            return False
        detail = error.lower()
        if not any(word in detail for word in _FORMAT_WORDS) or "invalid schema" in detail:
            return False  # not about support for response_format (a bad schema stays an error)
        if self.json_mode == mode:  # concurrent calls may already have stepped down
            self.json_mode = _NEXT_MODE[mode]
            self.downgrades += 1
            _log.warning(
                "llm_json_mode_downgraded",
                endpoint=self.endpoint,
                model=self._model,
                from_mode=mode,
                to_mode=self.json_mode,
            )
        return True

    async def aclose(self) -> None:
        if self._lean is not None:
            await self._lean.aclose()
        if self._sdk is not None:
            await self._sdk.close()


def _read(response: Any) -> tuple[str, Usage]:
    import openai

    if not isinstance(response, openai.types.chat.ChatCompletion):
        raise MalformedResponseError(
            f"openai: expected a chat completion object, got {type(response).__name__}"
        )
    if not response.choices or response.choices[0].message is None:
        raise MalformedResponseError("openai: response has no choices")
    text = clean_text(response.choices[0].message.content or "")
    u = response.usage
    if u is None or not isinstance(u.prompt_tokens, int):
        raise MalformedResponseError("openai: response has no token usage")
    details = u.prompt_tokens_details
    cached = (details.cached_tokens or 0) if details is not None else 0
    written = (details.cache_write_tokens or 0) if details is not None else 0
    return text, Usage(
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens or 0,
        cached_input_tokens=cached,
        cache_write_tokens=written,
    )


def _read_json(body: bytes) -> tuple[str, Usage]:
    """Text and usage of a chat completion's JSON body (the lean path's :func:`_read`); the
    text, as there, with lone surrogates replaced (:func:`~friendsim.llm.json_extract.clean_text`)."""
    try:
        data = loads_envelope(body)
        counts = _token_counts(data)
        if floats_in(*counts):  # perhaps integers beyond 64 bits: read them as the stdlib does
            data = json.loads(body)
            counts = _token_counts(data)
    except ValueError as exc:
        raise MalformedResponseError(f"openai: undecodable response body: {exc}") from exc
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedResponseError("openai: response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise MalformedResponseError("openai: response has no choices")
    text = message.get("content")
    if text is not None and not isinstance(text, str):
        raise MalformedResponseError("openai: message content is not text")
    prompt, completion, cached, written = counts
    if not _count(prompt):
        raise MalformedResponseError("openai: response has no token usage")
    return clean_text(text or ""), Usage(
        input_tokens=prompt,
        output_tokens=_count_or_zero(completion),
        cached_input_tokens=_count_or_zero(cached),
        cache_write_tokens=_count_or_zero(written),
    )


def _token_counts(data: object) -> tuple[object, object, object, object]:
    """The prompt, completion, cached and cache-write token counts of a decoded completion
    (``None`` for each one missing)."""
    u = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(u, dict):
        return None, None, None, None
    details = u.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    return (
        u.get("prompt_tokens"),
        u.get("completion_tokens"),
        details.get("cached_tokens"),
        details.get("cache_write_tokens"),
    )


def _count_or_zero(value: object) -> int:
    return value if _count(value) else 0


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def create_openai_llm(
    model: str,
    *,
    base_urls: Sequence[str] = (),
    base_url: str | None = None,
    endpoints: Sequence[Endpoint] = (),
    cooldown_s: float = 2.0,
    max_cooldown_s: float = 60.0,
    failover: bool = True,
    affinity: bool = True,
    **options: Any,
) -> LLM:
    """Registry factory for ``openai:`` specs. One URL (or none) gives an
    :class:`OpenAIChatLLM`; several (from the spec or ``base_urls``) give a pool of them.
    ``endpoints`` (an endpoints file, :mod:`friendsim.llm.endpoints`) always gives a pool, with
    the file's weights and concurrency caps; it cannot be combined with URLs."""
    urls = list(base_urls) + ([base_url] if base_url else [])
    if endpoints and urls:
        raise ProviderConfigError(
            "openai: give endpoint URLs either in the spec or in an endpoints file, not both"
        )
    if endpoints:
        return PooledLLM(
            [OpenAIChatLLM(model, base_url=e.url, **options) for e in endpoints],
            names=[e.url for e in endpoints],
            weights=[e.weight for e in endpoints],
            max_concurrency=[e.max_concurrency for e in endpoints],
            cooldown_s=cooldown_s,
            max_cooldown_s=max_cooldown_s,
            failover=failover,
            affinity=affinity,
        )
    if len(urls) <= 1:
        return OpenAIChatLLM(model, base_url=urls[0] if urls else None, **options)
    members = [OpenAIChatLLM(model, base_url=u, **options) for u in urls]
    return PooledLLM(
        members,
        names=urls,
        cooldown_s=cooldown_s,
        max_cooldown_s=max_cooldown_s,
        failover=failover,
        affinity=affinity,
    )


def _proxied(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (as httpx would)."""
    import urllib.request

    parts = urlsplit(url)
    proxies = urllib.request.getproxies()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")
