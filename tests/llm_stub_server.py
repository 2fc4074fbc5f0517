"""A stdlib HTTP server on 127.0.0.1 that speaks enough of two LLM APIs for real-HTTP tests.

- ``POST /v1/messages``: the Anthropic Messages API (text, ``output_config`` JSON-schema
  output, forced tool calls, prompt-cache accounting for ``cache_control`` system blocks).
- ``POST /v1/chat/completions``: the OpenAI Chat Completions API (``response_format``
  json_schema / json_object, optional lack of support answered with HTTP 400 like vLLM does,
  ``prompt_tokens_details.cached_tokens`` for a repeated system prefix).

By default it answers every request (the text echoes the last user message, JSON requests get
``json_answer``). :meth:`StubLLMServer.enqueue` scripts the next replies: any status, headers,
raw body, a delay, or a dropped connection. Every request is recorded (path, headers, body).
:meth:`stop` kills the server *and* its open keep-alive connections, as a crashed server would.
``latency_s`` delays every reply (a remote model's response time); run as a script it serves
until killed and prints its port (used by ``bench/llm_concurrency.py --http``).
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, kw_only=True, slots=True)
class StubReply:
    """One scripted reply. ``body=None`` means "the normal synthesised answer"."""

    status: int = 200
    body: dict[str, Any] | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    drop: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512
    allow_reuse_address = True

    def __init__(self, stub: StubLLMServer) -> None:
        self.stub = stub
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up (timeouts, shutdown) are expected here; stay quiet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr access log
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        stub = self.server.stub
        stub._record(
            RecordedRequest(
                path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body
            )
        )
        reply = stub._next_reply()
        delay = reply.delay_s or stub.latency_s
        if delay and stub._stopping.wait(delay):
            return
        if reply.drop:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, payload, headers = stub._respond(self.path, body, reply)
        try:
            self.send_response(status)
            self.send_header("content-type", headers.pop("content-type", "application/json"))
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:  # the client gave up (timeout) or the server is stopping
            self.close_connection = True


class StubLLMServer:
    """Start with :meth:`start` (or ``with StubLLMServer() as s``); ``s.base_url`` is the root."""

    def __init__(
        self,
        *,
        json_answer: Any = None,
        text_answer: str | None = None,
        supports_json_schema: bool = True,
        supports_response_format: bool = True,
        supports_output_config: bool = True,
        latency_s: float = 0.0,
    ) -> None:
        self.supports_output_config = supports_output_config
        self.latency_s = latency_s
        self.json_answer = {"ok": True} if json_answer is None else json_answer
        self.text_answer = text_answer
        self.supports_json_schema = supports_json_schema
        self.supports_response_format = supports_response_format
        self.requests: list[RecordedRequest] = []
        self._replies: deque[StubReply] = deque()
        self._lock = threading.Lock()
        self._seen_prefixes: set[str] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> StubLLMServer:
        self._server = _Server(self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and cut every open connection (like a crashed server)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._server.conn_lock:
            conns = list(self._server.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> StubLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.base_url}/v1"

    # -- scripting ---------------------------------------------------------------------------
    def enqueue(self, *replies: StubReply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def _next_reply(self) -> StubReply:
        with self._lock:
            return self._replies.popleft() if self._replies else StubReply()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _prefix_seen(self, prefix: str) -> bool:
        with self._lock:
            seen = prefix in self._seen_prefixes
            self._seen_prefixes.add(prefix)
            return seen

    # -- answers -----------------------------------------------------------------------------
    def _respond(self, path: str, body: Any, reply: StubReply) -> tuple[int, bytes, dict[str, str]]:
        headers = dict(reply.headers)
        if isinstance(reply.body, bytes):
            return reply.status, reply.body, headers
        if reply.body is not None:
            return reply.status, json.dumps(reply.body).encode(), headers
        if reply.status != 200:
            err = {
                "type": "error",
                "error": {"type": "api_error", "message": f"stub {reply.status}"},
            }
            return reply.status, json.dumps(err).encode(), headers
        if not isinstance(body, dict):
            return 400, b'{"error": {"message": "body must be a JSON object"}}', headers
        match path:
            case "/v1/messages":
                if "output_config" in body and not self.supports_output_config:
                    err = {
                        "type": "error",
                        "error": {
                            "type": "invalid_request_error",
                            "message": "output_config.format: not supported for this model",
                        },
                    }
                    return 400, json.dumps(err).encode(), headers
                return 200, json.dumps(self._anthropic(body)).encode(), headers
            case "/v1/chat/completions":
                status, answer = self._openai(body)
                return status, json.dumps(answer).encode(), headers
        return 404, b'{"error": {"message": "no such path"}}', headers

    def _echo(self, messages: list[dict[str, Any]]) -> str:
        if self.text_answer is not None:
            return self.text_answer
        last = messages[-1]["content"] if messages else ""
        if isinstance(last, list):
            last = " ".join(b.get("text", "") for b in last)
        return f"echo: {last}"

    def _anthropic(self, body: dict[str, Any]) -> dict[str, Any]:
        system = body.get("system") or []
        blocks = [{"type": "text", "text": system}] if isinstance(system, str) else system
        system_text = "".join(b.get("text", "") for b in blocks)
        cached_prefix = any("cache_control" in b for b in blocks)
        total_in = max(1, len(json.dumps(body.get("messages", []))) // 4) + len(system_text) // 4
        read = write = 0
        if cached_prefix and system_text:
            prefix_tokens = len(system_text) // 4
            if self._prefix_seen("anthropic:" + system_text):
                read = prefix_tokens
            else:
                write = prefix_tokens
        choice = body.get("tool_choice") or {}
        if choice.get("type") == "tool":
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_stub",
                    "name": choice["name"],
                    "input": self.json_answer,
                }
            ]
            out_text = json.dumps(self.json_answer)
            stop = "tool_use"
        else:
            fmt = (body.get("output_config") or {}).get("format")
            out_text = json.dumps(self.json_answer) if fmt else self._echo(body.get("messages", []))
            content = [{"type": "text", "text": out_text}]
            stop = "end_turn"
        return {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "stub"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": total_in - read - write,
                "output_tokens": max(1, len(out_text) // 4),
                "cache_read_input_tokens": read,
                "cache_creation_input_tokens": write,
            },
        }

    def _openai(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fmt = body.get("response_format") or {}
        kind = fmt.get("type")
        if (kind == "json_schema" and not self.supports_json_schema) or (
            kind in ("json_schema", "json_object") and not self.supports_response_format
        ):
            return 400, {
                "error": {
                    "message": f"response_format type {kind!r} is not supported by this server",
                    "type": "invalid_request_error",
                    "param": "response_format",
                    "code": None,
                }
            }
        messages = body.get("messages", [])
        system_text = "".join(m["content"] for m in messages if m.get("role") == "system")
        if kind in ("json_schema", "json_object"):
            text = json.dumps(self.json_answer)
        elif "JSON" in system_text:  # prompted for JSON without enforcement: prose around it
            text = f"Sure! Here it is:\n```json\n{json.dumps(self.json_answer)}\n```"
        else:
            text = self._echo([m for m in messages if m.get("role") != "system"])
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        cached = 0
        if system_text and self._prefix_seen("openai:" + system_text):
            cached = min(prompt_tokens, len(system_text) // 4)
        completion_tokens = max(1, len(text) // 4)
        return 200, {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "stub"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "prompt_tokens_details": {"cached_tokens": cached},
            },
        }


def main() -> None:
    """Serve until killed: ``python tests/llm_stub_server.py [--latency-ms N]``; prints the port."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(description="LLM API stub server on 127.0.0.1")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    args = ap.parse_args()
    server = StubLLMServer(latency_s=args.latency_ms / 1000.0).start()
    sys.stdout.write(f"{server.port}\n")
    sys.stdout.flush()
    threading.Event().wait()


if __name__ == "__main__":
    main()
