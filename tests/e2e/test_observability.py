"""Sentry events and JSON logs from a real worker, received by a local HTTP endpoint."""

from __future__ import annotations

import gzip
import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support import WorkerProcess, free_port, scalar, wait_for
from workers import enqueue
from workers.observability import scrub_text

pytestmark = pytest.mark.slow


class SentryStub(ThreadingHTTPServer):
    """Collects the events of Sentry envelopes POSTed to it."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        super().__init__(("127.0.0.1", 0), _EnvelopeHandler)


class _EnvelopeHandler(BaseHTTPRequestHandler):
    server: SentryStub

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        elif self.headers.get("Content-Encoding") == "br":
            import brotli

            body = brotli.decompress(body)
        lines = body.split(b"\n")
        for header, payload in zip(lines[1::2], lines[2::2], strict=False):
            if json.loads(header).get("type") == "event":
                self.server.events.append(json.loads(payload))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sentry_stub() -> Iterator[SentryStub]:
    server = SentryStub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_failed_attempt_reaches_sentry_tagged_and_scrubbed(
    effects: str, redis_namespace: str, sentry_stub: SentryStub
) -> None:
    dsn = f"http://publickey@127.0.0.1:{sentry_stub.server_address[1]}/42"
    with WorkerProcess(env={"SENTRY_DSN": dsn, "LOG_FORMAT": "json"}) as worker:
        worker.wait_ready(effects)
        job = enqueue("leak", ["ann.smith@example.com"]).id
        wait_for(
            lambda: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) == "dead",
            30,
            what=f"the job to fail\n{worker.output()}",
        )
        wait_for(lambda: sentry_stub.events, 20, what=f"a Sentry event\n{worker.output()}")
        output = worker.output()
    event = sentry_stub.events[0]
    assert {k: event["tags"][k] for k in ("actor", "job_id", "queue", "attempt")} == {
        "actor": "leak",
        "job_id": str(job),
        "queue": "default",
        "attempt": "1",
    }
    text = json.dumps(event)
    assert "RuntimeError" in text
    for secret in ("ann.smith@example.com", "4111 1111 1111 1111", "7946 0958"):
        assert secret not in text
    assert "[email]" in text and "[card]" in text
    # JSON log lines, the job's ones naming it
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert lines, output
    about_job = [line for line in lines if line.get("job_id") == job]
    assert about_job and all(line["actor"] == "leak" and line["attempt"] == 1 for line in about_job)


def test_one_log_line_per_failed_attempt(effects: str, redis_namespace: str) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        flaky = enqueue("flaky", ["once", 1]).id
        refused = enqueue("refuse", ["never"]).id
        thrown = enqueue("expected", ["declared"]).id  # an exception the actor's `throws` names
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE state IN ('succeeded', 'dead')") == 3,
            30,
            what=f"the three jobs to finish\n{worker.output()}",
        )
        output = worker.output()
    assert "Traceback" not in output and "Failed to process message" not in output, output
    lines = output.splitlines()
    assert len([line for line in lines if f"job {thrown}: expected attempt 1 failed, dead" in line]) == 1
    assert len([line for line in lines if f"job {flaky}: flaky attempt 1 failed, retry in" in line]) == 1
    assert len([line for line in lines if f"job {refused}: refuse attempt 1 failed, dead" in line]) == 1
    # The traceback is kept in the ledger, where ops read it.
    assert "Traceback" in scalar(effects, "SELECT traceback FROM job_attempts WHERE job_id = %s", (refused,))


def test_scrub_text() -> None:
    assert scrub_text("mail bob@example.org or call +1 (555) 123-4567, card 4242-4242-4242-4242") == (
        "mail [email] or call [phone], card [card]"
    )


def test_workers_export_dramatiq_metrics_when_asked(effects: str, redis_namespace: str) -> None:
    port = free_port()
    with WorkerProcess(env={"SKYPORT_WORKER_METRICS_PORT": str(port)}) as worker:
        worker.wait_ready(effects)
        job = enqueue("remember", ["metered"]).id
        wait_for(
            lambda: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) == "succeeded",
            30,
            what=f"the job to run\n{worker.output()}",
        )

        def scrape() -> str:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
            except OSError:
                return ""

        text = wait_for(lambda: "remember" in scrape() and scrape(), 20, what=f"metrics\n{worker.output()}")
    assert 'dramatiq_messages_total{actor_name="remember",queue_name="default"}' in text
