"""A stdlib HTTP server on 127.0.0.1 that speaks enough of two LLM APIs for real-HTTP tests.

- ``POST /v1/messages``: the Anthropic Messages API (text, ``output_config`` JSON-schema
  output, forced tool calls, prompt-cache accounting for ``cache_control`` system blocks).
- ``POST /v1/chat/completions``: the OpenAI Chat Completions API (``response_format``
  json_schema / json_object, optional lack of support answered with HTTP 400 like vLLM does,
  ``prompt_tokens_details.cached_tokens`` for a repeated system prefix).

- Batch endpoints: OpenAI's ``POST /v1/files`` (multipart JSONL upload), ``POST /v1/batches``,
  ``GET /v1/batches/{id}``, ``GET /v1/files/{id}/content``; Anthropic's
  ``POST /v1/messages/batches``, ``GET /v1/messages/batches/{id}`` and ``.../results``. Each
  item is answered as the live endpoint would answer it. ``hold_batches`` keeps new batches
  "in progress" until :meth:`release_batches`; ``expire_batches`` ends them expired, unanswered.
  ``batch_creates`` lists every created batch (api, id, custom ids).

By default it answers every request (the text echoes the last user message, JSON requests get
``json_answer``); ``responder(api, body)`` (``api`` is ``"anthropic"`` or ``"openai"``) answers
instead when given, with a string or a JSON value. ``min_cache_tokens`` is the shortest system
prefix either API caches (the real APIs have such a floor; 0 caches any prefix). :meth:`StubLLMServer.enqueue` scripts the next replies: any status, headers,
raw body, a delay, or a dropped connection. Every request is recorded (path, headers, body).
:meth:`stop` kills the server *and* its open keep-alive connections, as a crashed server would.
``latency_s`` delays every reply (a remote model's response time); ``jitter_s`` adds to each
reply's delay a random time in ``[0, jitter_s)``, drawn from a generator seeded by
``jitter_seed``, so the answers to concurrent requests complete in another order than they were
asked in (and in another order in each run with another seed); ``answered`` lists the requests
(their indices in ``requests``) in the order their answers were sent in full. A reply's headers
and body are two writes: on a keep-alive connection the body then waits for the client's delayed
ACK of the headers (about 40 ms a request on Linux) unless ``nodelay`` sends it at once
(``TCP_NODELAY``, as production servers do). Run as a script it serves until killed and prints
its port (used by ``bench/llm_concurrency.py --http``).

Fault injection for the chaos suite: ``responder`` answers chat requests like a model
(:func:`mind_responder` plays :func:`~friendsim.runtime.scripted_mind.plausible_responder`
over HTTP, so agents get valid plans); ``fault`` (settable at any time) is a reply given to
*every* request while set (a server answering 500 or 401 to everything, or hanging); ``fault_every``
gives the ``fault`` only to every k-th request; ``echo_headers`` puts the request headers (API key
included) into every error body, as some misconfigured proxies do. :class:`NeverAccepting` is a
server that is down without refusing connections (a connect times out).
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable
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
        super().__init__(("127.0.0.1", stub.port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return  # clients hanging up (timeouts, shutdown) are expected here; stay quiet


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        self.disable_nagle_algorithm = self.server.stub.nodelay
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

    def _send(self, status: int, payload: bytes, ctype: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def do_GET(self) -> None:
        stub = self.server.stub
        stub._record(
            RecordedRequest(
                path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=None
            )
        )
        status, payload, ctype = stub._batch_get(self.path.split("?")[0])
        self._send(status, payload, ctype)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length)
        stub = self.server.stub
        if self.path.split("?")[0] in ("/v1/files", "/v1/batches", "/v1/messages/batches"):
            headers = {k.lower(): v for k, v in self.headers.items()}
            stub._record(RecordedRequest(path=self.path, headers=headers, body=None))
            status, payload = stub._batch_post(
                self.path.split("?")[0], raw, self.headers.get("content-type", "")
            )
            self._send(status, payload)
            return
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        index = stub._record(
            RecordedRequest(
                path=self.path, headers={k.lower(): v for k, v in self.headers.items()}, body=body
            )
        )
        reply = stub._next_reply()
        if reply.status != 200 and stub.echo_headers and reply.body is None:
            echoed = {k.lower(): v for k, v in self.headers.items()}
            reply = StubReply(
                status=reply.status,
                body={"error": {"message": f"rejected request with headers {echoed}"}},
                headers=reply.headers,
                delay_s=reply.delay_s,
            )
        delay = reply.delay_s or stub.latency_s + stub._jitter()
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
            return
        if status == 200:
            stub._served(payload, index)


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
        jitter_s: float = 0.0,
        jitter_seed: int = 0,
        nodelay: bool = False,
        responder: Callable[[str, dict[str, Any]], Any] | None = None,
        min_cache_tokens: int = 0,
        hold_batches: bool = False,
        expire_batches: bool = False,
        fault: StubReply | None = None,
        fault_every: int = 1,
        echo_headers: bool = False,
        fault_from: int = 0,
        port: int = 0,
    ) -> None:
        self.hold_batches = hold_batches
        self.expire_batches = expire_batches
        self.batch_creates: list[tuple[str, str, list[str]]] = []
        self._files: dict[str, bytes] = {}
        self._batches: dict[str, dict[str, Any]] = {}
        self.responder = responder
        self.min_cache_tokens = min_cache_tokens
        self.fault_from = fault_from
        self.fault = fault
        self.fault_every = fault_every
        self.echo_headers = echo_headers
        self._count = 0
        self.supports_output_config = supports_output_config
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.nodelay = nodelay
        self._jitter_rng = random.Random(jitter_seed)
        self.answered: list[int] = []
        self.json_answer = {"ok": True} if json_answer is None else json_answer
        self.text_answer = text_answer
        self.supports_json_schema = supports_json_schema
        self.supports_response_format = supports_response_format
        self.requests: list[RecordedRequest] = []
        self.served: Counter[str] = Counter()
        """Chat answers sent in full and the tokens they reported (``answers``,
        ``input_tokens``, ``output_tokens``)."""
        self._replies: deque[StubReply] = deque()
        self._lock = threading.Lock()
        self._seen_prefixes: set[str] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.port = port

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
            self._count += 1
            if self._replies:
                return self._replies.popleft()
            fault = self.fault
            if (
                fault is not None
                and self._count > self.fault_from
                and self._count % self.fault_every == 0
            ):
                return fault
            return StubReply()

    def _jitter(self) -> float:
        if not self.jitter_s:
            return 0.0
        with self._lock:
            return self._jitter_rng.uniform(0.0, self.jitter_s)

    def _served(self, payload: bytes, index: int) -> None:
        """Add the token usage of a chat answer that was sent in full to :attr:`served`, and
        request ``index`` to :attr:`answered`."""
        with self._lock:
            self.answered.append(index)
        try:
            usage = json.loads(payload).get("usage")
        except (ValueError, AttributeError):
            return
        if isinstance(usage, dict):
            with self._lock:
                self.served["answers"] += 1
                sent_in = usage.get("prompt_tokens", usage.get("input_tokens", 0))
                sent_out = usage.get("completion_tokens", usage.get("output_tokens", 0))
                self.served["input_tokens"] += int(sent_in or 0)
                self.served["output_tokens"] += int(sent_out or 0)

    def _record(self, request: RecordedRequest) -> int:
        """Keep ``request``; its index in :attr:`requests`."""
        with self._lock:
            self.requests.append(request)
            return len(self.requests) - 1

    def _prefix_seen(self, prefix: str) -> bool:
        with self._lock:
            seen = prefix in self._seen_prefixes
            self._seen_prefixes.add(prefix)
            return seen

    def release_batches(self) -> None:
        """Let held batches end (their answers are computed when first retrieved)."""
        with self._lock:
            self.hold_batches = False

    # -- batches -----------------------------------------------------------------------------
    def _batch_post(self, path: str, raw: bytes, ctype: str) -> tuple[int, bytes]:
        with self._lock:
            n = len(self._files) + len(self._batches)
        if path == "/v1/files":
            import email.parser
            import email.policy

            msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(
                f"content-type: {ctype}\r\n\r\n".encode() + raw
            )
            data = b""
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    data = part.get_payload(decode=True) or b""
            fid = f"file-{n}"
            with self._lock:
                self._files[fid] = data
            return 200, json.dumps(
                {"id": fid, "object": "file", "bytes": len(data), "created_at": 0,
                 "filename": "requests.jsonl", "purpose": "batch", "status": "processed"}
            ).encode()  # fmt: skip
        body = json.loads(raw)
        if path == "/v1/batches":
            lines = [json.loads(x) for x in self._files[body["input_file_id"]].splitlines() if x]
            items = [(x["custom_id"], x["body"]) for x in lines]
            bid, api = f"batch_{n}", "openai"
        else:
            items = [(x["custom_id"], x["params"]) for x in body["requests"]]
            bid, api = f"msgbatch_{n}", "anthropic"
        with self._lock:
            self._batches[bid] = {"api": api, "items": items, "input": body, "output": None}
            self.batch_creates.append((api, bid, [k for k, _ in items]))
        return 200, json.dumps(self._batch_object(bid)).encode()

    def _batch_state(self, bid: str) -> str:
        b = self._batches[bid]
        with self._lock:
            if self.hold_batches:
                return "pending"
        if b["output"] is None:
            if self.expire_batches:
                b["output"] = {}
            else:
                api = b["api"]
                b["output"] = {
                    key: (self._anthropic(body) if api == "anthropic" else self._openai(body)[1])
                    for key, body in b["items"]
                }
        return "expired" if self.expire_batches else "ended"

    def _batch_object(self, bid: str) -> dict[str, Any]:
        b, state = self._batches[bid], self._batch_state(bid)
        n = len(b["items"])
        if b["api"] == "openai":
            status = {"pending": "in_progress", "ended": "completed", "expired": "expired"}[state]
            return {
                "id": bid, "object": "batch", "endpoint": "/v1/chat/completions", "errors": None,
                "input_file_id": b["input"]["input_file_id"], "completion_window": "24h",
                "status": status, "created_at": 0,
                "output_file_id": f"out-{bid}" if state == "ended" else None,
                "error_file_id": None,
                "request_counts": {"total": n, "completed": n if state == "ended" else 0,
                                   "failed": 0},
            }  # fmt: skip
        done = state != "pending"
        return {
            "id": bid, "type": "message_batch",
            "processing_status": "ended" if done else "in_progress",
            "request_counts": {"processing": 0 if done else n,
                               "succeeded": n if state == "ended" else 0, "errored": 0,
                               "canceled": 0, "expired": n if state == "expired" else 0},
            "created_at": "2026-12-03T00:00:00Z", "expires_at": "2026-12-04T00:00:00Z",
            "ended_at": "2026-12-03T00:01:00Z" if done else None, "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{bid}/results" if done else None,
        }  # fmt: skip

    def _batch_get(self, path: str) -> tuple[int, bytes, str]:
        parts = path.strip("/").split("/")
        if parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in self._batches:
            return 200, json.dumps(self._batch_object(parts[2])).encode(), "application/json"
        if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
            bid = parts[2].removeprefix("out-")
            out = self._batches[bid]["output"] or {}
            rows = [
                {"id": f"r-{key[:8]}", "custom_id": key, "error": None,
                 "response": {"status_code": 200, "request_id": "x", "body": answer}}
                for key, answer in out.items()
            ]  # fmt: skip
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            return 200, body, "application/octet-stream"
        if parts[:3] == ["v1", "messages", "batches"] and len(parts) >= 4:
            bid = parts[3]
            if bid not in self._batches:
                return (
                    404,
                    b'{"type":"error","error":{"type":"not_found_error","message":"no"}}',
                    ("application/json"),
                )
            if len(parts) == 4:
                return 200, json.dumps(self._batch_object(bid)).encode(), "application/json"
            state = self._batch_state(bid)
            out = self._batches[bid]["output"] or {}
            rows = [
                {"custom_id": key, "result": {"type": "succeeded", "message": msg}}
                for key, msg in out.items()
            ]
            if state == "expired":
                rows = [
                    {"custom_id": key, "result": {"type": "expired"}}
                    for key, _ in self._batches[bid]["items"]
                ]
            body = "".join(json.dumps(r) + "\n" for r in rows).encode()
            return 200, body, "application/binary"
        return 404, b'{"error": {"message": "no such path"}}', "application/json"

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
        if cached_prefix and system_text and len(system_text) // 4 >= self.min_cache_tokens:
            prefix_tokens = len(system_text) // 4
            if self._prefix_seen("anthropic:" + system_text):
                read = prefix_tokens
            else:
                write = prefix_tokens
        choice = body.get("tool_choice") or {}
        answer = self.json_answer
        fmt = (body.get("output_config") or {}).get("format")
        if self.responder is not None:
            answer = self.responder("anthropic", body)
        if choice.get("type") == "tool":
            content = [
                {
                    "type": "tool_use",
                    "id": "toolu_stub",
                    "name": choice["name"],
                    "input": answer,
                }
            ]
            out_text = json.dumps(answer)
            stop = "tool_use"
        else:
            if self.responder is not None:
                out_text = answer if isinstance(answer, str) else json.dumps(answer)
            else:
                out_text = json.dumps(answer) if fmt else self._echo(body.get("messages", []))
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
        if self.responder is not None:
            answer = self.responder("openai", body)
            text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
        elif kind in ("json_schema", "json_object"):
            text = json.dumps(self.json_answer)
        elif "JSON" in system_text:  # prompted for JSON without enforcement: prose around it
            text = f"Sure! Here it is:\n```json\n{json.dumps(self.json_answer)}\n```"
        else:
            text = self._echo([m for m in messages if m.get("role") != "system"])
        prompt_tokens = max(1, len(json.dumps(messages)) // 4)
        if fmt:  # the structured-output schema is billed as prompt tokens too
            prompt_tokens += len(json.dumps(fmt)) // 4
        cached = 0
        if (
            system_text
            and len(system_text) // 4 >= self.min_cache_tokens
            and self._prefix_seen("openai:" + system_text)
        ):
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


class NeverAccepting:
    """A server on 127.0.0.1 that is down without refusing: its socket listens with a backlog
    of 0 and one connection already queued that it never accepts, so the kernel drops every
    further connection attempt (SYN) and a client's connect times out, as against a blackholed
    address. ``base_url`` and ``openai_base_url`` as :class:`StubLLMServer`'s."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = int(self._listener.getsockname()[1])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.openai_base_url = f"{self.base_url}/v1"
        self._queued = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        probe = socket.socket()
        probe.settimeout(0.2)
        try:
            probe.connect(("127.0.0.1", self.port))
        except TimeoutError:
            pass
        else:  # pragma: no cover - a kernel that accepts past the backlog
            raise RuntimeError("this kernel queues connections past a full backlog")
        finally:
            probe.close()

    def __enter__(self) -> NeverAccepting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._queued.close()
        self._listener.close()


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


def mind_responder(seed: int = 0) -> Callable[[str, dict[str, Any]], Any]:
    """A ``responder`` answering a run's requests like the in-process scripted mind does.

    The request is rebuilt from the HTTP body (system, messages, schema, sampling settings) and
    its purpose inferred from the schema (``actions``: plan, ``votes``: vote, ``tips``: coach,
    ``action``: moderation, ``answers``: survey, none: content), so an OpenAI-compatible run gets exactly the answers the in-process stand-in
    would give it for the same requests.
    """
    from friendsim.llm.base import LLMRequest, Message
    from friendsim.runtime.scripted_mind import plausible_responder

    respond = plausible_responder(seed)

    def answer(api: str, body: dict[str, Any]) -> Any:
        if api == "openai":
            msgs = body.get("messages", [])
            system = "".join(m["content"] for m in msgs if m.get("role") == "system")
            turns = [m for m in msgs if m.get("role") != "system"]
            fmt = body.get("response_format") or {}
            schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema")
        else:
            blocks = body.get("system") or []
            system = blocks if isinstance(blocks, str) else "".join(b["text"] for b in blocks)
            turns = body.get("messages", [])
            schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
            if schema is None and body.get("tools"):
                schema = body["tools"][0]["input_schema"]
        props = (schema or {}).get("properties", {})
        label = next(
            (lab for key, lab in (("actions", "plan"), ("votes", "vote"), ("tips", "coach"),
                                  ("action", "moderation"), ("answers", "survey"))
             if key in props),
            "content",
        )  # fmt: skip
        request = LLMRequest(
            system=system,
            messages=tuple(Message(role=m["role"], content=m["content"]) for m in turns),
            json_schema=schema,
            temperature=body.get("temperature", 0.7),
            max_tokens=body.get("max_tokens") or body.get("max_completion_tokens") or 512,
            seed=body.get("seed"),
            label=label,
        )
        return respond(request)

    return answer
