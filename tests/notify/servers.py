"""Local providers for notification tests: an SMTP server (aiosmtpd) and an HTTP provider that can
be told to fail (status codes, timeouts), both recording what they received."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from tests.support import free_port


class SmtpSink:
    """A real SMTP server on a free port; `messages` holds what it accepted.
    `refuse` (set of addresses) answers 550 for those recipients."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Any] = []
        self.refuse: set[str] = set()
        self._lock = threading.Lock()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted for delivery"

    def __enter__(self) -> SmtpSink:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


class HttpProvider:
    """A JSON-over-HTTP provider. `plan` (a list) gives the next responses in order, then `mode`:
    an int status code, "timeout" (answers after `hang_s`), or "ok". `received` logs each accepted
    request's Idempotency-Key; `requests` counts every request. With `hold_after`, the requests
    after that many wait for `unhold` (set) before they are answered: a test knows a send is in
    flight, whatever the machine's speed."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mode: int | str = "ok"
        self.plan: list[int | str] = []
        self.hang_s = 3.0
        self.delay_s = 0.0
        self.received: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.requests = 0
        self.arrivals: list[float] = []  # time.time() of every request, as the provider counts
        self.retry_after = "1"  # the Retry-After of a 429
        self.hold_after: int | None = None
        self.unhold = threading.Event()
        self._lock = threading.Lock()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with provider._lock:
                    provider.requests += 1
                    number = provider.requests
                    provider.arrivals.append(time.time())
                    action = provider.plan.pop(0) if provider.plan else provider.mode
                if provider.hold_after is not None and number > provider.hold_after:
                    provider.unhold.wait(60)
                if provider.delay_s:
                    time.sleep(provider.delay_s)
                if action == "timeout":
                    time.sleep(provider.hang_s)
                    action = 200
                status = 200 if action == "ok" else int(action)
                if status < 300:
                    with provider._lock:
                        provider.received.append(self.headers.get("Idempotency-Key", ""))
                        provider.bodies.append(json.loads(body))
                        provider.headers.append(dict(self.headers))
                payload = b'{"ok": true}' if status < 300 else b'{"error": "told to fail"}'
                with contextlib.suppress(OSError):  # the sender gave up (or was killed) meanwhile
                    self.send_response(status)
                    if status == 429:
                        self.send_header("Retry-After", provider.retry_after)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/send"

    def per_second(self) -> Counter[int]:
        """Requests per second of the provider's clock (whole seconds since the epoch)."""
        with self._lock:
            return Counter(int(t) for t in self.arrivals)

    def duplicates(self) -> dict[str, int]:
        return {k: n for k, n in Counter(self.received).items() if n > 1}

    def __enter__(self) -> HttpProvider:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unhold.set()  # no handler left waiting on a test that ended early
        self.server.shutdown()
        self.server.server_close()
