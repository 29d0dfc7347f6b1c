"""Sentry and logs: what ops sees when something goes wrong.

- Sentry (when SENTRY_DSN is set), through sentry-sdk's Dramatiq integration; each failed
  attempt carries actor, job id, queue and attempt as tags; personal data (emails, phone
  numbers, card numbers) is scrubbed from every event before it leaves the process.
- Logs: one format for every process; JSON lines when LOG_FORMAT=json. Lines logged while a job
  runs carry its job id, actor and attempt.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.dramatiq import DramatiqIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

import config

_job = threading.local()

# What personal data looks like in free text (messages, exception values, breadcrumbs).
_SCRUBBERS = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[card]"),
    (re.compile(r"\+?\d[\d ().-]{7,}\d"), "[phone]"),
)
# Keys whose values are dropped wherever they appear in an event.
_SENSITIVE_KEYS = re.compile(
    r"(?i)(email|phone|address|card|pan|cvv|password|secret|token|first_name|last_name|postal)"
)


def scrub_text(text: str) -> str:
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


def _scrub(value: Any, key: str = "") -> Any:
    if key and _SENSITIVE_KEYS.search(key):
        return "[scrubbed]"
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def scrub_event(event: dict[str, Any], hint: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry's before_send: scrub personal data everywhere but the tags we set ourselves."""
    tags = event.get("tags")
    scrubbed = _scrub({k: v for k, v in event.items() if k != "tags"})
    if tags is not None:
        scrubbed["tags"] = tags
    return scrubbed


def init_sentry(component: str) -> bool:
    """Start Sentry when SENTRY_DSN is set (before any broker is built: the integration hooks
    into Dramatiq's Broker). True when it is on."""
    dsn = config.get().observability.sentry_dsn
    if not dsn:
        return False
    sentry_sdk.init(
        dsn=dsn,
        integrations=[DramatiqIntegration(), LoggingIntegration(event_level=None)],
        send_default_pii=False,
        before_send=scrub_event,
        before_breadcrumb=lambda crumb, hint: _scrub(crumb),
        server_name=component,
        environment=config.get().observability.environment,
    )
    return True


def set_prometheus_env(cfg: config.Config) -> None:
    """Dramatiq's Prometheus middleware reads its port and multiprocess folder from the
    environment when its module loads, in the worker processes and in the exposition process
    that Dramatiq's main process forks: set them before either starts. A folder per port keeps
    two worker groups on one host apart."""
    os.environ["dramatiq_prom_port"] = str(cfg.worker.metrics_port)  # noqa: SIM112 - Dramatiq's name
    os.environ["dramatiq_prom_db"] = os.path.join(  # noqa: SIM112
        tempfile.gettempdir(), f"skyport-prometheus-{cfg.worker.metrics_port}"
    )


_poison_counter: Any = None


def count_poison_messages(queue: str, count: int) -> None:
    """`skyport_poison_messages_total{queue}`: undecodable messages a consumer set aside. Made at
    the first one: prometheus_client must load after Dramatiq's Prometheus middleware set its
    multiprocess folder, or the worker processes' counts would not be exported."""
    global _poison_counter
    if _poison_counter is None:
        from prometheus_client import Counter

        _poison_counter = Counter(
            "skyport_poison_messages", "Undecodable broker messages dead-lettered", ["queue"]
        )
    _poison_counter.labels(queue).inc(count)


# ---- job context ------------------------------------------------------------------------------


def set_job_context(job_id: int, actor: str, queue: str, attempt: int) -> None:
    """Called when a job starts in this thread: logs and Sentry events then name it."""
    _job.context = {"job_id": job_id, "actor": actor, "attempt": attempt}
    if not sentry_sdk.get_client().is_active():
        return
    sentry_sdk.set_tag("job_id", str(job_id))
    sentry_sdk.set_tag("actor", actor)
    sentry_sdk.set_tag("queue", queue)
    sentry_sdk.set_tag("attempt", str(attempt))


def clear_job_context() -> None:
    _job.context = None


class JobContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = getattr(_job, "context", None) or {}
        record.job = context
        record.job_suffix = "".join(f" {k}={v}" for k, v in context.items())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "thread": record.threadName,
            "message": record.getMessage(),
            **getattr(record, "job", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class LedgerLogsFailures(logging.Filter):
    """Drops Dramatiq's "Failed to process message ... with unhandled exception" (and traceback) or
    "... with expected exception" (an actor's `throws`): the ledger middleware logs every failed
    attempt as one line (job, actor, attempt, error, retry or dead), and keeps the traceback in the
    ledger (`skyport jobs show`, the console)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith("Failed to process message "))


# The logger of Dramatiq's worker threads (dramatiq/worker.py).
DRAMATIQ_WORKER_LOGGER = "dramatiq.worker.WorkerThread"
_LEDGER_LOGS_FAILURES = LedgerLogsFailures()


def configure_logging(level: int = logging.INFO) -> None:
    """One handler on stderr for this process (and the worker processes it forks)."""
    handler = logging.StreamHandler()
    handler.addFilter(JobContextFilter())
    if config.get().observability.log_format == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s] %(message)s%(job_suffix)s"
        )
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger(DRAMATIQ_WORKER_LOGGER).addFilter(_LEDGER_LOGS_FAILURES)
