"""Configuration: every environment variable the system reads, in one place (12-factor).

Defaults point at the local servers, so a developer needs no configuration. A malformed value
fails fast with one line naming the variable (`ConfigError`), never a traceback deep in a driver.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

# The database a developer gets without configuration.
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/skyport"
# The broker a developer gets without configuration.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class ConfigError(Exception):
    """A configuration value is missing or malformed; the message names the variable."""


def _url(name: str, default: str, schemes: tuple[str, ...]) -> str:
    value = os.environ.get(name, "").strip() or default
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise ConfigError(f"{name} is not a valid URL ({exc}): {value!r}") from None
    if parts.scheme not in schemes:
        raise ConfigError(f"{name} must start with one of {', '.join(s + '://' for s in schemes)}: {value!r}")
    if parts.scheme != "unix" and not parts.hostname and "host=" not in parts.query:
        raise ConfigError(f"{name} has no host: {value!r}")
    return value


def _number(name: str, default: float, *, minimum: float = 0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _int(name: str, default: int, *, minimum: int = 0) -> int:
    value = _number(name, default, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{name} must be a whole number, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    redis_namespace: str
    sentry_dsn: str | None
    worker_processes: int
    worker_threads: int
    # Port of the workers' Prometheus exposition (Dramatiq's middleware); None: off.
    worker_metrics_port: int | None
    # Seconds between two heartbeats of a worker process.
    heartbeat_interval_s: float
    # A worker silent for this long is dead: its running jobs go back to the queue.
    worker_dead_after_s: float
    # A queued job published this long ago and still not started is published again.
    republish_after_s: float
    # Seconds between two sweeps of the relay when no NOTIFY woke it.
    relay_sweep_s: float
    # Jobs the relay publishes per transaction.
    relay_batch: int
    # How long finished jobs are kept before pruning.
    keep_succeeded_days: float
    keep_dead_days: float
    # TOML file of partitioned tables and materialized views (jobs/partitions, jobs/matviews).
    maintenance_file: str | None
    # Partition DDL waits at most this long for a table lock, then gives up and retries later.
    partition_lock_timeout_s: float
    # Fewer intervals than this covered ahead of the current one is a warning.
    partition_warn_ahead: int
    # Dashboard logins: "name:<argon2 hash>:role,..." (role admin or readonly).
    dashboard_users: str = ""
    # Signs the dashboard's session cookies; unset: a random key per process (with a warning).
    secret_key: str | None = None
    # jobs/notifications: SMTP (no host: email not configured), SMS and push providers (JSON over
    # HTTP; no URL: not configured), claim batch, lease and time budget of one dispatch job, backoff.
    smtp_host: str | None = None
    smtp_port: int = 587
    # "starttls", "ssl" (implicit TLS) or "none".
    smtp_tls: str = "starttls"
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "Skyport <no-reply@skyport.local>"
    smtp_timeout_s: float = 10.0
    sms_url: str | None = None
    sms_token: str | None = None
    sms_timeout_s: float = 10.0
    push_url: str | None = None
    push_token: str | None = None
    push_timeout_s: float = 10.0
    notify_batch: int = 100
    notify_lease_s: float = 120.0
    notify_time_budget_s: float = 50.0
    notify_backoff_base_s: float = 30.0
    notify_backoff_max_s: float = 3600.0
    # jobs/quotes: quotes expired per transaction, loops working a backlog at once.
    quote_expiry_batch: int = 1000
    quote_expiry_expirers: int = 2
    # jobs/payments: the default webhook secret (PAYMENT_WEBHOOK_SECRET_<PROVIDER> overrides it, see
    # `payment_webhook_secret`), the allowed clock skew of a signature, the largest body accepted,
    # how long an event for an unknown shipment (or a refund before its payment) keeps retrying.
    payment_webhook_secret: str | None = None
    payment_tolerance_s: float = 300.0
    payment_max_body_bytes: int = 65536
    payment_unmatched_retry_s: float = 900.0
    # `skyport web`: processes serving the one port (uvicorn workers), and one log line per request.
    web_concurrency: int = 1
    web_access_log: bool = True

    @property
    def broker_kind(self) -> str:
        return "rabbitmq" if self.redis_url.startswith(("amqp://", "amqps://")) else "redis"

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.database_url)


def to_sqlalchemy_url(database_url: str) -> str:
    """The same database for SQLAlchemy/Alembic, through the psycopg 3 driver."""
    scheme, rest = database_url.split("://", 1)
    return f"postgresql+psycopg://{rest}" if scheme in ("postgres", "postgresql") else database_url


def load() -> Settings:
    """Read the environment now (tests call this after changing it)."""
    return Settings(
        database_url=_url("DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")),
        redis_url=_url("REDIS_URL", DEFAULT_REDIS_URL, ("redis", "rediss", "unix", "amqp", "amqps")),
        redis_namespace=os.environ.get("SKYPORT_BROKER_NAMESPACE", "").strip() or "skyport",
        sentry_dsn=os.environ.get("SENTRY_DSN", "").strip() or None,
        worker_processes=_int("SKYPORT_WORKER_PROCESSES", 2, minimum=1),
        worker_threads=_int("SKYPORT_WORKER_THREADS", 8, minimum=1),
        worker_metrics_port=_int("SKYPORT_WORKER_METRICS_PORT", 0) or None,
        heartbeat_interval_s=_number("SKYPORT_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1),
        worker_dead_after_s=_number("SKYPORT_WORKER_DEAD_AFTER_S", 30.0, minimum=0.5),
        republish_after_s=_number("SKYPORT_REPUBLISH_AFTER_S", 300.0, minimum=1),
        relay_sweep_s=_number("SKYPORT_RELAY_SWEEP_S", 1.0, minimum=0.05),
        relay_batch=_int("SKYPORT_RELAY_BATCH", 500, minimum=1),
        keep_succeeded_days=_number("SKYPORT_KEEP_SUCCEEDED_DAYS", 7),
        keep_dead_days=_number("SKYPORT_KEEP_DEAD_DAYS", 30),
        maintenance_file=os.environ.get("SKYPORT_MAINTENANCE_FILE", "").strip() or None,
        partition_lock_timeout_s=_number("SKYPORT_PARTITION_LOCK_TIMEOUT_S", 5.0, minimum=0.1),
        partition_warn_ahead=_int("SKYPORT_PARTITION_WARN_AHEAD", 2, minimum=0),
        dashboard_users=os.environ.get("SKYPORT_DASHBOARD_USERS", "").strip(),
        secret_key=os.environ.get("SKYPORT_SECRET_KEY", "").strip() or None,
        **_notification_settings(),
        payment_webhook_secret=os.environ.get("PAYMENT_WEBHOOK_SECRET", "") or None,
        payment_tolerance_s=_number("PAYMENT_WEBHOOK_TOLERANCE_S", 300.0, minimum=1),
        payment_max_body_bytes=_int("PAYMENT_WEBHOOK_MAX_BODY_BYTES", 65536, minimum=1024),
        payment_unmatched_retry_s=_number("PAYMENT_UNMATCHED_RETRY_S", 900.0),
        web_concurrency=_int("WEB_CONCURRENCY", 1, minimum=1),
        web_access_log=_flag("SKYPORT_WEB_ACCESS_LOG", True),
    )


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1/0 (true/false, on/off), got {raw!r}")


def _smtp_tls(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip().lower() or default
    if value not in ("starttls", "ssl", "none"):
        raise ConfigError(f"{name} must be starttls, ssl or none, got {value!r}")
    return value


def _optional_http_url(name: str) -> str | None:
    return _url(name, "", ("http", "https")) if os.environ.get(name, "").strip() else None


def _notification_settings() -> dict:
    """jobs/notifications and jobs/quotes."""
    env = os.environ.get
    return {
        "smtp_host": env("SKYPORT_SMTP_HOST", "").strip() or None,
        "smtp_port": _int("SKYPORT_SMTP_PORT", 587, minimum=1),
        "smtp_tls": _smtp_tls("SKYPORT_SMTP_TLS", "starttls"),
        "smtp_user": env("SKYPORT_SMTP_USER", "").strip() or None,
        "smtp_password": env("SKYPORT_SMTP_PASSWORD", "") or None,
        "smtp_from": env("SKYPORT_SMTP_FROM", "").strip() or "Skyport <no-reply@skyport.local>",
        "smtp_timeout_s": _number("SKYPORT_SMTP_TIMEOUT_S", 10.0, minimum=0.1),
        "sms_url": _optional_http_url("SKYPORT_SMS_URL"),
        "sms_token": env("SKYPORT_SMS_TOKEN", "").strip() or None,
        "sms_timeout_s": _number("SKYPORT_SMS_TIMEOUT_S", 10.0, minimum=0.1),
        "push_url": _optional_http_url("SKYPORT_PUSH_URL"),
        "push_token": env("SKYPORT_PUSH_TOKEN", "").strip() or None,
        "push_timeout_s": _number("SKYPORT_PUSH_TIMEOUT_S", 10.0, minimum=0.1),
        "notify_batch": _int("SKYPORT_NOTIFY_BATCH", 100, minimum=1),
        "notify_lease_s": _number("SKYPORT_NOTIFY_LEASE_S", 120.0, minimum=1),
        "notify_time_budget_s": _number("SKYPORT_NOTIFY_TIME_BUDGET_S", 50.0, minimum=0.1),
        "notify_backoff_base_s": _number("SKYPORT_NOTIFY_BACKOFF_BASE_S", 30.0),
        "notify_backoff_max_s": _number("SKYPORT_NOTIFY_BACKOFF_MAX_S", 3600.0),
        "quote_expiry_batch": _int("SKYPORT_QUOTE_EXPIRY_BATCH", 1000, minimum=1),
        "quote_expiry_expirers": _int("SKYPORT_QUOTE_EXPIRY_EXPIRERS", 2, minimum=1),
    }


def payment_webhook_secret(provider: str) -> str | None:
    """The webhook secret of a provider: PAYMENT_WEBHOOK_SECRET_<PROVIDER> (upper-cased, other
    characters than letters and digits as _), else PAYMENT_WEBHOOK_SECRET; None: not configured."""
    name = "PAYMENT_WEBHOOK_SECRET_" + "".join(c if c.isalnum() else "_" for c in provider.upper())
    return os.environ.get(name, "") or get().payment_webhook_secret


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process-wide settings, read once."""
    return load()
