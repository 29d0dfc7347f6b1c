"""The demo's notification providers, so every channel can deliver (`scripts/run` starts them):

    python -m demo.providers [--smtp-port 8025] [--http-port 8026] [--failure-rate 0.1]

- an SMTP sink (aiosmtpd) that accepts every email, and
- an SMS and push provider (`POST /sms`, `POST /push`, JSON as the notifications family sends it),

both recording what they received, shown newest first at `GET /` (and `GET /messages.json`): the
console's header links there. Each delivery fails with probability `--failure-rate` (SMTP 451, HTTP
503: the family retries them with backoff). A notification whose metadata says
`{"demo_fail_times": N}` fails its first N deliveries per channel and then always succeeds: the
demo seeds a few with N equal to their attempts, so they end dead and a retry from the console
delivers them.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import os
import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

# Where the providers listen unless told otherwise.
DEFAULT_SMTP_PORT = 8025
DEFAULT_HTTP_PORT = 8026
# Share of deliveries that fail (transiently) unless told otherwise.
DEFAULT_FAILURE_RATE = 0.1
# Messages kept per provider (the oldest go).
MAX_KEPT = 500


@dataclass
class Outbox:
    """What the providers received, and the failure rule they apply."""

    failure_rate: float = DEFAULT_FAILURE_RATE
    received: list[dict[str, Any]] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    rng: random.Random = field(default_factory=random.Random)

    def decide(self, key: str, fail_times: int) -> str | None:
        """None to accept this delivery, else why it fails: the first `fail_times` deliveries of
        `key` (a scripted failure), otherwise at random with the failure rate."""
        with self.lock:
            self.attempts[key] += 1
            seen = self.attempts[key]
            if fail_times:
                return f"scripted failure {seen} of {fail_times}" if seen <= fail_times else None
            return "random failure" if self.rng.random() < self.failure_rate else None

    def keep(self, channel: str, to: str, title: str, body: str) -> None:
        with self.lock:
            self.received.append(
                {"channel": channel, "to": to, "title": title, "body": body, "at": time.time()}
            )
            del self.received[:-MAX_KEPT]

    def newest_first(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(reversed(self.received))


class SmtpSink:
    """aiosmtpd's handler: keeps each accepted email; a failure answers 451 (try again later)."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.content, policy=email_policy)
        key = str(message.get("Message-ID", ""))
        failure = self.outbox.decide(f"email:{key}", 0)
        if failure:
            return f"451 4.3.0 demo provider: {failure}"
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        self.outbox.keep("email", ", ".join(envelope.rcpt_tos), str(message.get("Subject", "")), text)
        return "250 OK: kept by the demo's SMTP sink"


def http_handler(outbox: Outbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            channel = self.path.strip("/")
            if channel not in ("sms", "push"):
                self._answer(404, "application/json", b'{"error": "POST /sms or /push"}')
                return
            try:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                fail_times = int((body.get("metadata") or {}).get("demo_fail_times") or 0)
            except (ValueError, TypeError, AttributeError):
                self._answer(400, "application/json", b'{"error": "a JSON object"}')
                return
            key = self.headers.get("Idempotency-Key") or json.dumps(body, sort_keys=True)
            failure = outbox.decide(f"{channel}:{key}", fail_times)
            if failure:
                self._answer(503, "application/json", json.dumps({"error": failure}).encode())
                return
            outbox.keep(
                channel, str(body.get("to", "")), str(body.get("title", "")), str(body.get("message", ""))
            )
            self._answer(200, "application/json", b'{"accepted": true}')

        def do_GET(self) -> None:
            if self.path == "/messages.json":
                self._answer(200, "application/json", json.dumps(outbox.newest_first()).encode())
            elif self.path == "/":
                self._answer(200, "text/html; charset=utf-8", inbox_page(outbox).encode())
            else:
                self._answer(404, "text/plain", b"not found")

        def _answer(self, status: int, content_type: str, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def inbox_page(outbox: Outbox) -> str:
    rows = "".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            time.strftime("%H:%M:%S", time.localtime(m["at"])),
            *(html.escape(m[k]) for k in ("channel", "to", "title", "body")),
        )
        for m in outbox.newest_first()
    )
    return (
        "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5>"
        "<title>Demo outbox</title><style>body{font:14px system-ui;margin:1.5em}"
        "td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}"
        "table{border-collapse:collapse}</style>"
        f"<h1>What the demo's providers received</h1><p>Failure rate {outbox.failure_rate:.0%} "
        "(scripted failures aside). Newest first; refreshes every 5 s.</p>"
        "<table><tr><th>time</th><th>channel</th><th>to</th><th>title</th><th>message</th></tr>"
        f"{rows or '<tr><td colspan=5>nothing yet</td></tr>'}</table>"
    )


def failure_rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share from 0 to 1, got {text}")
    return value


class Providers:
    """The SMTP sink and the SMS/push provider, running in threads of this process."""

    def __init__(
        self,
        smtp_port: int,
        http_port: int,
        failure_rate: float = DEFAULT_FAILURE_RATE,
        seed: int | None = None,
    ) -> None:
        self.outbox = Outbox(failure_rate=failure_rate, rng=random.Random(seed))
        self.smtp = Controller(SmtpSink(self.outbox), hostname="127.0.0.1", port=smtp_port)
        self.http = ThreadingHTTPServer(("127.0.0.1", http_port), http_handler(self.outbox))
        self.http.daemon_threads = True
        self.http_port = http_port

    def start(self) -> Providers:
        self.smtp.start()
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.http.shutdown()
        self.http.server_close()
        self.smtp.stop()

    def __enter__(self) -> Providers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.providers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT, help="the SMTP sink's port")
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="the SMS/push provider's port"
    )
    parser.add_argument(
        "--failure-rate",
        type=failure_rate,
        default=DEFAULT_FAILURE_RATE,
        help="share of deliveries that fail",
    )
    args = parser.parse_args(argv)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    parent = os.getppid()
    with Providers(args.smtp_port, args.http_port, args.failure_rate):
        print(
            f"demo providers: SMTP 127.0.0.1:{args.smtp_port}, "
            f"SMS/push http://127.0.0.1:{args.http_port}/sms and /push, "
            f"what they received: http://127.0.0.1:{args.http_port}/ "
            f"(failure rate {args.failure_rate:.0%})",
            flush=True,
        )
        # Until stopped, or until the process that started it (scripts/run's honcho) is gone.
        with contextlib.suppress(KeyboardInterrupt):
            while not stopping.wait(1.0) and os.getppid() == parent:
                pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
