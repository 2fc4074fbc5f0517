"""Anthropic Messages API through the official ``anthropic`` AsyncAnthropic client.

- Structured output: ``structured_output="native"`` (default) sends the schema as
  ``output_config.format`` (the API's JSON-schema output) and decodes the text;
  ``"tool"`` forces a call to a single ``respond`` tool whose ``input_schema`` is the schema
  (works on models without native structured output) and takes the tool input as the answer.
  A 400 that rejects ``output_config`` switches the instance to ``"tool"`` for good and re-sends
  the call at once (not a retry).
- Prompt caching: the system text (the stable persona/rules prefix) is sent as one text block
  with ``cache_control: {"type": "ephemeral"}``; the API's ``cache_read_input_tokens`` and
  ``cache_creation_input_tokens`` become ``Usage.cached_input_tokens`` / ``cache_write_tokens``
  and are added into ``Usage.input_tokens`` (the API reports them apart from ``input_tokens``).
- Retries: the SDK client is built with ``max_retries=0``; :mod:`friendsim.llm.retry` retries
  (see there why). Errors are mapped by :func:`friendsim.llm.sdk_errors.map_sdk_error`.
- Timeout: ``timeout_s`` bounds each request as a whole, a slowly trickling answer included
  (:class:`~friendsim.llm.errors.LLMTimeoutError`, retried); the SDK's own timeouts are per read.
  A request whose connection could not be opened in that time sent nothing: an unreachable
  :class:`~friendsim.llm.errors.LLMConnectionError`, as a refused connection.
- Keys: the SDK reads ``ANTHROPIC_API_KEY`` (or its own configuration); ``api_key_env`` names
  another variable. Keys are never logged or stored.
- Sampling: this SDK version no longer takes ``temperature`` on ``messages.create`` (recent
  models fix it); ``send_temperature=True`` sends it in the body for models that accept it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, Literal

import anthropic
import structlog

from friendsim.llm.base import Completion, LLMRequest, Usage
from friendsim.llm.connect_watch import WATCH, ConnectWatch, timeout_error, watch_request
from friendsim.llm.errors import MalformedResponseError, ProviderConfigError
from friendsim.llm.json_extract import clean_text, clean_value, extract_json
from friendsim.llm.redact import register_key_env
from friendsim.llm.registry import model_id
from friendsim.llm.sdk_errors import map_sdk_error
from friendsim.llm.urls import sdk_endpoint

_log = structlog.get_logger(__name__)
StructuredMode = Literal["native", "tool"]
_TOOL_NAME = "respond"
_NO_CREDENTIALS = "anthropic: no credentials found; set ANTHROPIC_API_KEY in the environment"


class AnthropicLLM:
    """One Anthropic model as an :class:`~friendsim.llm.base.LLM`."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 0,
        structured_output: StructuredMode = "native",
        cache_system: bool = True,
        cache_ttl: Literal["5m", "1h"] | None = None,
        send_temperature: bool = False,
        api_key_env: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        if structured_output not in ("native", "tool"):
            raise ProviderConfigError(
                f"anthropic structured_output must be 'native' or 'tool', got {structured_output!r}"
            )
        self._model = model
        self._timeout_s = timeout_s
        self.structured_output: StructuredMode = structured_output
        self.downgrades = 0
        self._cache_system = cache_system
        self._cache_ttl = cache_ttl
        self._send_temperature = send_temperature
        try:
            self.endpoint = sdk_endpoint(
                base_url, "ANTHROPIC_BASE_URL", "https://api.anthropic.com"
            )
        except ValueError as exc:
            raise ProviderConfigError(f"anthropic: {exc}") from None
        self.key_env = api_key_env or "ANTHROPIC_API_KEY"
        register_key_env(self.key_env)
        if client is None:
            kwargs: dict[str, Any] = {"max_retries": max_retries, "timeout": timeout_s}
            if base_url is not None:
                kwargs["base_url"] = base_url
            if api_key_env is not None:
                key = os.environ.get(api_key_env)
                if not key:
                    raise ProviderConfigError(
                        f"anthropic: environment variable {api_key_env} (api_key_env) is not set"
                    )
                kwargs["api_key"] = key
            hooks = {"request": [watch_request]}
            client = anthropic.AsyncAnthropic(
                **kwargs, http_client=anthropic.DefaultAsyncHttpxClient(event_hooks=hooks)
            )
        self._client = client

    @property
    def model(self) -> str:
        return model_id("anthropic", self._model)

    def _request_kwargs(self, request: LLMRequest, mode: StructuredMode) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self._model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        if request.system:
            block: dict[str, Any] = {"type": "text", "text": request.system}
            if self._cache_system:
                cache: dict[str, Any] = {"type": "ephemeral"}
                if self._cache_ttl is not None:
                    cache["ttl"] = self._cache_ttl
                block["cache_control"] = cache
            kwargs["system"] = [block]
        stops = [x for x in request.stop if x.strip()]  # the API refuses whitespace-only ones
        if stops:
            kwargs["stop_sequences"] = stops
        if request.json_schema is not None:
            schema = dict(request.json_schema)
            match mode:
                case "native":
                    kwargs["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
                case "tool":
                    kwargs["tools"] = [
                        {
                            "name": _TOOL_NAME,
                            "description": "Give the answer as structured data.",
                            "input_schema": schema,
                        }
                    ]
                    kwargs["tool_choice"] = {"type": "tool", "name": _TOOL_NAME}
        if self._send_temperature:
            kwargs["extra_body"] = {"temperature": request.temperature}
        return kwargs

    async def complete(self, request: LLMRequest) -> Completion:
        started = time.perf_counter()
        while True:
            mode = self.structured_output
            watch = ConnectWatch()
            token = WATCH.set(watch)
            try:
                async with asyncio.timeout(self._timeout_s):  # httpx's timeouts are per read
                    message = await self._client.messages.create(
                        **self._request_kwargs(request, mode)
                    )
                break
            except (TimeoutError, anthropic.APITimeoutError):
                raise timeout_error("anthropic", watch, self.endpoint, self._timeout_s) from None
            except anthropic.CredentialsError as exc:
                raise ProviderConfigError(_NO_CREDENTIALS) from exc
            except TypeError as exc:  # how this SDK reports "no credentials at all"
                if "authentication" in str(exc):
                    raise ProviderConfigError(_NO_CREDENTIALS) from exc
                raise
            except anthropic.BadRequestError as exc:
                if not self._downgrade(request, mode, exc):
                    raise map_sdk_error(exc, anthropic, "anthropic") from exc
            except anthropic.AnthropicError as exc:
                raise map_sdk_error(exc, anthropic, "anthropic") from exc
            except ValueError as exc:  # a body that is not JSON at all
                raise MalformedResponseError(
                    f"anthropic: undecodable response body: {exc}"
                ) from exc
            finally:
                WATCH.reset(token)
        if not isinstance(message, anthropic.types.Message):
            raise MalformedResponseError(
                f"anthropic: expected a Message object, got {type(message).__name__}"
            )
        text, parsed = self._answer(message, request, mode)
        return Completion(
            text=text,
            model=self._model,
            usage=_usage(message),
            parsed=parsed,
            latency_s=time.perf_counter() - started,
            provider="anthropic",
        )

    def _downgrade(
        self, request: LLMRequest, mode: StructuredMode, exc: anthropic.BadRequestError
    ) -> bool:
        """Switch this model to forced-tool output if ``exc`` rejects ``output_config``."""
        if request.json_schema is None or mode != "native" or "output_config" not in str(exc):
            return False
        if self.structured_output == "native":
            self.structured_output = "tool"
            self.downgrades += 1
            _log.warning(
                "llm_json_mode_downgraded", model=self._model, from_mode=mode, to_mode="tool"
            )
        return True

    def _answer(
        self, message: anthropic.types.Message, request: LLMRequest, mode: StructuredMode
    ) -> tuple[str, Any]:
        blocks = message.content
        if not isinstance(blocks, list):
            raise MalformedResponseError("anthropic: response has no content list")
        if request.json_schema is not None and mode == "tool":
            for block in blocks:
                if isinstance(block, anthropic.types.ToolUseBlock) and block.name == _TOOL_NAME:
                    text = json.dumps(block.input, ensure_ascii=False)
                    cleaned = clean_text(text)
                    if cleaned is text:
                        return text, block.input
                    return cleaned, clean_value(block.input)  # lone surrogates
        text = "".join(b.text for b in blocks if isinstance(b, anthropic.types.TextBlock))
        text = clean_text(text)
        parsed = extract_json(text) if request.json_schema is not None else None
        return text, parsed

    async def aclose(self) -> None:
        await self._client.close()


def _usage(message: anthropic.types.Message) -> Usage:
    u = message.usage  # the SDK builds models without validation: fields may be None
    if u is None or not isinstance(u.input_tokens, int) or not isinstance(u.output_tokens, int):
        raise MalformedResponseError("anthropic: response has no usable token usage")
    read = u.cache_read_input_tokens or 0
    write = u.cache_creation_input_tokens or 0
    return Usage(
        input_tokens=u.input_tokens + read + write,
        output_tokens=u.output_tokens,
        cached_input_tokens=read,
        cache_write_tokens=write,
    )


def create_anthropic_llm(model: str, **options: Any) -> AnthropicLLM:
    """Registry factory for ``anthropic:<model>``; options go to :class:`AnthropicLLM`."""
    return AnthropicLLM(model, **options)
