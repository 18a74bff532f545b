"""A loopback OpenAI-compatible server: POST /v1/chat/completions answers with text the test chose.

with LLMStandIn() as llm:
    llm.reply = "The team ..."        # or llm.hang = True (until llm.release()), or llm.status = 500
    client = OpenAI(api_key="test", base_url=llm.base_url)
    llm.requests[0]["messages"]       # what the model was shown
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LLMStandIn:
    def __init__(self) -> None:
        self.reply = "A summary."
        self.hang = False
        self.status = 200
        self.model = "gpt-4o-mini"
        self.prompt_tokens = 321
        self.completion_tokens = 54
        self.requests: list[dict[str, Any]] = []
        self._release = threading.Event()
        self._asked = threading.Condition()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> LLMStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = json.loads(body or b"{}")
                with standin._asked:
                    standin.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **request})
                    standin._asked.notify_all()
                if standin.hang:
                    standin._release.wait(30)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, {"error": {"message": "not found"}})
                elif standin.status != 200:
                    self._send(standin.status, {"error": {"message": "server error", "type": "server_error"}})
                else:
                    self._send(200, standin.completion(request))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout tests)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def release(self) -> None:
        """Let a hanging model answer (what it answers: `reply`, or `status`)."""
        self._release.set()

    def wait_for_request(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait until the model has been asked `count` times (it may still be thinking)."""
        with self._asked:
            if not self._asked.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"the model was asked {len(self.requests)} time(s), not {count}")

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_780_000_000,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.reply}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }
