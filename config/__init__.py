"""Configuration: every environment variable Skyport Jobs reads, in this one module (12-factor).

`load()` reads the environment into one frozen dataclass per area; `get()` is the process-wide
copy. Defaults point at the local servers, so a developer needs no configuration. A malformed
value fails fast with one line naming the variable (`ConfigError`), never a traceback deep in a
driver. Nothing else in the product reads `os.environ`: docs/configuration.md lists exactly the
variables read here (a test keeps the two equal).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from urllib.parse import urlsplit

from config.parse import ConfigError, Reader, to_sqlalchemy_url

__all__ = [
    "DEFAULT_BROKER_URL",
    "DEFAULT_DATABASE_URL",
    "Config",
    "ConfigError",
    "get",
    "load",
    "to_sqlalchemy_url",
    "variables",
]

# The database a developer gets without configuration.
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/skyport"
# The broker a developer gets without configuration.
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"
# Variables named by a prefix and a name of the user's choosing.
SCHEDULE_PREFIX = "SKYPORT_SCHEDULE_"
WEBHOOK_SECRET_PREFIX = "PAYMENT_WEBHOOK_SECRET_"
PAYMENT_PROVIDER_PREFIX = "PAYMENT_PROVIDER_"
# The gateway adapters a provider may name (jobs/payments/providers/).
PAYMENT_ADAPTERS = ("standard", "stripe", "paystack")


@dataclass(frozen=True)
class DatabaseConfig:
    # Where every connection goes: the server, or a pooler in front of it.
    url: str
    # A direct connection to the server (not through a transaction pooler), for LISTEN and
    # migrations; None: `url` is direct enough, or (behind a transaction pooler) nothing listens.
    direct_url: str | None = None
    # "none", or "transaction": `url` is a transaction pooler (PgBouncer pool_mode=transaction),
    # so no connection keeps session state: no prepared statements, no LISTEN, no session locks.
    pooler: str = "none"

    @property
    def sqlalchemy_url(self) -> str:
        return to_sqlalchemy_url(self.url)

    @property
    def session_url(self) -> str | None:
        """A URL whose connections keep their session (LISTEN, session settings), or None."""
        return self.direct_url or (self.url if self.pooler == "none" else None)


@dataclass(frozen=True)
class BrokerConfig:
    # BROKER_URL (REDIS_URL is the older name); an amqp:// URL selects RabbitMQ.
    url: str
    # Redis key prefix.
    namespace: str

    @property
    def kind(self) -> str:
        return "rabbitmq" if self.url.startswith(("amqp://", "amqps://")) else "redis"


@dataclass(frozen=True)
class WorkerConfig:
    processes: int
    threads: int
    # Port of the workers' Prometheus exposition (Dramatiq's middleware); None: off.
    metrics_port: int | None
    # Seconds between two heartbeats of a worker process.
    heartbeat_interval_s: float
    # A worker silent for this long is dead: its running jobs go back to the queue.
    dead_after_s: float
    # A queued job published this long ago and still not started is published again.
    republish_after_s: float
    # Seconds between two sweeps of the relay when no NOTIFY woke it; jobs it publishes per transaction.
    relay_sweep_s: float
    relay_batch: int
    # An idle consumer that hears wake-ups (workers/wake.py) still asks Redis this often.
    idle_poll_s: float
    # How long finished jobs are kept before pruning.
    keep_succeeded_days: float
    keep_dead_days: float
    # More actor modules (an app's own), imported wherever every actor must be declared.
    extra_modules: tuple[str, ...]


@dataclass(frozen=True)
class ObservabilityConfig:
    sentry_dsn: str | None
    # Sentry's environment tag.
    environment: str
    # "text" or "json" (JSON lines with the job id, actor and attempt).
    log_format: str


@dataclass(frozen=True)
class WebConfig:
    # The address and port `skyport web` listens on unless --host / --port say otherwise.
    host: str
    port: int
    # Processes serving the one port (uvicorn workers), and one log line per request.
    concurrency: int
    access_log: bool
    # Dashboard logins: "name:<argon2 hash>:role,..." (role admin or readonly).
    dashboard_users: str
    # Signs the dashboard's session cookies; None: a random key per process (with a warning).
    secret_key: str | None
    # The console's address as its users reach it (https://ops.example.com); None: not set.
    public_url: str | None
    # Session cookies only over HTTPS (Secure); default on when public_url is https.
    secure_cookies: bool
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (networks, e.g. "10.0.0.0/8").
    trusted_proxies: tuple[str, ...]
    # More links in the console's header: (label, http(s) URL), e.g. a mail catcher, a runbook.
    console_links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class SchedulerConfig:
    # A TOML file changing or adding schedule entries.
    file: str | None
    # SKYPORT_SCHEDULE_<NAME> values by variable name: an entry's trigger, or on/off.
    overrides: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NotificationsConfig:
    # SMTP (no host: email not configured); TLS "starttls", "ssl" (implicit) or "none".
    smtp_host: str | None
    smtp_port: int
    smtp_tls: str
    smtp_user: str | None
    smtp_password: str | None
    smtp_from: str
    smtp_timeout_s: float
    # SMS and push providers (JSON over HTTP; no URL: not configured).
    sms_url: str | None
    sms_token: str | None
    sms_timeout_s: float
    push_url: str | None
    push_token: str | None
    push_timeout_s: float
    # Most sends per period over each channel, fleet-wide, as (count, seconds); None: no limit.
    sms_rate: tuple[int, float] | None
    push_rate: tuple[int, float] | None
    smtp_rate: tuple[int, float] | None
    # Rows per claim, how long a claim holds them, how long one dispatch job claims, retry delays.
    batch: int
    lease_s: float
    time_budget_s: float
    backoff_base_s: float
    backoff_max_s: float


@dataclass(frozen=True)
class QuotesConfig:
    # Quotes expired per transaction; loops working a backlog at once.
    expiry_batch: int
    expirers: int


@dataclass(frozen=True)
class PaymentsConfig:
    # The default webhook secret; `secrets` holds PAYMENT_WEBHOOK_SECRET_<PROVIDER> by provider key
    # (several, comma-separated, during a rotation); `adapters` PAYMENT_PROVIDER_<PROVIDER>.
    webhook_secret: str | None
    secrets: Mapping[str, str]
    adapters: Mapping[str, str]
    # The allowed clock skew of a signature, the largest body accepted, how long an event for an
    # unknown shipment (or a refund before its payment) keeps retrying.
    tolerance_s: float
    max_body_bytes: int
    unmatched_retry_s: float
    # Events are processed in batches of at most `batch` by one job per intake transaction
    # ("batch"), or one job per event ("per-event": the earlier path, kept as the benchmark's peer).
    processing: str
    batch: int

    def secret_for(self, provider: str) -> str | None:
        """A provider's secret (PAYMENT_WEBHOOK_SECRET_<PROVIDER>, upper-cased, other characters
        than letters and digits as _), else the default; None: not configured."""
        return self.secrets.get(provider_key(provider)) or self.webhook_secret

    def secrets_for(self, provider: str) -> list[str]:
        """A provider's secrets (a comma-separated list: any one signs); empty: not configured."""
        secret = self.secret_for(provider)
        return [part.strip() for part in secret.split(",") if part.strip()] if secret else []

    def adapter_for(self, provider: str) -> str:
        """The gateway adapter of a provider (PAYMENT_PROVIDER_<PROVIDER>), else Standard Webhooks."""
        return self.adapters.get(provider_key(provider), "standard")


@dataclass(frozen=True)
class MaintenanceConfig:
    # TOML file of partitioned tables and materialized views (jobs/partitions, jobs/matviews).
    file: str | None
    # Partition DDL waits at most this long for a table lock, then gives up and retries later.
    partition_lock_timeout_s: float
    # Fewer intervals than this covered ahead of the current one is a warning.
    partition_warn_ahead: int


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig
    broker: BrokerConfig
    worker: WorkerConfig
    observability: ObservabilityConfig
    web: WebConfig
    scheduler: SchedulerConfig
    notifications: NotificationsConfig
    quotes: QuotesConfig
    payments: PaymentsConfig
    maintenance: MaintenanceConfig


def _payment_adapters(env: Reader) -> dict[str, str]:
    adapters = {}
    for name, value in env.prefixed(PAYMENT_PROVIDER_PREFIX, "<PROVIDER>").items():
        kind = value.lower()
        if kind not in PAYMENT_ADAPTERS:
            raise ConfigError(f"{name} must be one of {', '.join(PAYMENT_ADAPTERS)}, got {value!r}")
        adapters[name.removeprefix(PAYMENT_PROVIDER_PREFIX)] = kind
    return adapters


def provider_key(provider: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in provider.upper())


def load(environ: Mapping[str, str] | None = None) -> Config:
    """Read the environment now (tests call this after changing it)."""
    return _build(Reader(os.environ if environ is None else environ))


def variables() -> list[str]:
    """Every variable `load()` reads, prefixes as `<PREFIX><NAME>` (docs/configuration.md lists these)."""
    reader = Reader({})
    _build(reader)
    return sorted(reader.names)


def _build(env: Reader) -> Config:
    return Config(
        database=DatabaseConfig(
            url=env.url("DATABASE_URL", DEFAULT_DATABASE_URL, ("postgresql", "postgres")),
            direct_url=env.url("DATABASE_DIRECT_URL", "", ("postgresql", "postgres"))
            if env.text("DATABASE_DIRECT_URL")
            else None,
            pooler=env.choice("SKYPORT_DATABASE_POOLER", "none", ("none", "transaction")),
        ),
        broker=BrokerConfig(
            url=env.url(
                ("BROKER_URL", "REDIS_URL"), DEFAULT_BROKER_URL, ("redis", "rediss", "unix", "amqp", "amqps")
            ),
            namespace=env.text("SKYPORT_BROKER_NAMESPACE") or "skyport",
        ),
        worker=_worker(env),
        observability=ObservabilityConfig(
            sentry_dsn=env.text("SENTRY_DSN") or None,
            environment=env.text("SKYPORT_ENVIRONMENT") or "production",
            log_format=env.choice("LOG_FORMAT", "text", ("text", "json")),
        ),
        web=_web(env),
        scheduler=SchedulerConfig(
            file=env.text("SKYPORT_SCHEDULE_FILE") or None,
            overrides=env.prefixed(SCHEDULE_PREFIX, "<NAME>", exclude=("SKYPORT_SCHEDULE_FILE",)),
        ),
        notifications=_notifications(env),
        quotes=QuotesConfig(
            expiry_batch=env.int("SKYPORT_QUOTE_EXPIRY_BATCH", 1000, minimum=1),
            expirers=env.int("SKYPORT_QUOTE_EXPIRY_EXPIRERS", 2, minimum=1),
        ),
        payments=PaymentsConfig(
            webhook_secret=env.raw("PAYMENT_WEBHOOK_SECRET") or None,
            secrets={
                name.removeprefix(WEBHOOK_SECRET_PREFIX): value
                for name, value in env.prefixed(WEBHOOK_SECRET_PREFIX, "<PROVIDER>", raw=True).items()
                if value
            },
            adapters=_payment_adapters(env),
            tolerance_s=env.number("PAYMENT_WEBHOOK_TOLERANCE_S", 300.0, minimum=1),
            max_body_bytes=env.int("PAYMENT_WEBHOOK_MAX_BODY_BYTES", 65536, minimum=1024),
            unmatched_retry_s=env.number("PAYMENT_UNMATCHED_RETRY_S", 900.0),
            processing=env.choice("PAYMENT_PROCESSING", "batch", ("batch", "per-event")),
            batch=env.int("PAYMENT_BATCH_SIZE", 500, minimum=1),
        ),
        maintenance=MaintenanceConfig(
            file=env.text("SKYPORT_MAINTENANCE_FILE") or None,
            partition_lock_timeout_s=env.number("SKYPORT_PARTITION_LOCK_TIMEOUT_S", 5.0, minimum=0.1),
            partition_warn_ahead=env.int("SKYPORT_PARTITION_WARN_AHEAD", 2, minimum=0),
        ),
    )


def _web(env: Reader) -> WebConfig:
    public_url = env.optional_http_url("SKYPORT_PUBLIC_URL")
    https = bool(public_url and public_url.lower().startswith("https:"))
    return WebConfig(
        host=env.text("HOST") or "127.0.0.1",
        port=env.int("PORT", 8000, minimum=1),
        concurrency=env.int("WEB_CONCURRENCY", 1, minimum=1),
        access_log=env.flag("SKYPORT_WEB_ACCESS_LOG", True),
        dashboard_users=env.text("SKYPORT_DASHBOARD_USERS"),
        secret_key=env.text("SKYPORT_SECRET_KEY") or None,
        public_url=public_url,
        secure_cookies=env.flag("SKYPORT_SECURE_COOKIES", https),
        trusted_proxies=_networks(env, "SKYPORT_TRUSTED_PROXIES"),
        console_links=_links(env, "SKYPORT_CONSOLE_LINKS"),
    )


def _links(env: Reader, name: str) -> tuple[tuple[str, str], ...]:
    """`label=URL` pairs, comma-separated; each URL http(s) with a host."""
    links = []
    for part in env.names_list(name):
        label, sep, url = part.partition("=")
        parts = urlsplit(url.strip())
        if not sep or not label.strip() or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{name} must be label=http(s)://host/... pairs, comma-separated: {part!r}")
        links.append((label.strip(), url.strip()))
    return tuple(links)


def _networks(env: Reader, name: str) -> tuple[str, ...]:
    """Comma-separated addresses or CIDR networks, normalized ("10.0.0.1" -> "10.0.0.1/32")."""
    networks = []
    for part in env.names_list(name):
        try:
            networks.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ConfigError(
                f"{name} must be addresses or CIDR networks, comma-separated: {part!r}"
            ) from None
    return tuple(networks)


def _worker(env: Reader) -> WorkerConfig:
    return WorkerConfig(
        processes=env.int("SKYPORT_WORKER_PROCESSES", 2, minimum=1),
        threads=env.int("SKYPORT_WORKER_THREADS", 8, minimum=1),
        metrics_port=env.int("SKYPORT_WORKER_METRICS_PORT", 0) or None,
        heartbeat_interval_s=env.number("SKYPORT_HEARTBEAT_INTERVAL_S", 5.0, minimum=0.1),
        dead_after_s=env.number("SKYPORT_WORKER_DEAD_AFTER_S", 30.0, minimum=0.5),
        republish_after_s=env.number("SKYPORT_REPUBLISH_AFTER_S", 300.0, minimum=1),
        relay_sweep_s=env.number("SKYPORT_RELAY_SWEEP_S", 1.0, minimum=0.05),
        relay_batch=env.int("SKYPORT_RELAY_BATCH", 500, minimum=1),
        idle_poll_s=env.number("SKYPORT_WORKER_IDLE_POLL_S", 1.0, minimum=0.05),
        keep_succeeded_days=env.number("SKYPORT_KEEP_SUCCEEDED_DAYS", 7),
        keep_dead_days=env.number("SKYPORT_KEEP_DEAD_DAYS", 30),
        extra_modules=env.names_list("SKYPORT_EXTRA_MODULES"),
    )


def _notifications(env: Reader) -> NotificationsConfig:
    return NotificationsConfig(
        smtp_host=env.text("SKYPORT_SMTP_HOST") or None,
        smtp_port=env.int("SKYPORT_SMTP_PORT", 587, minimum=1),
        smtp_tls=env.choice("SKYPORT_SMTP_TLS", "starttls", ("starttls", "ssl", "none")),
        smtp_user=env.text("SKYPORT_SMTP_USER") or None,
        smtp_password=env.raw("SKYPORT_SMTP_PASSWORD") or None,
        smtp_from=env.text("SKYPORT_SMTP_FROM") or "Skyport <no-reply@skyport.local>",
        smtp_timeout_s=env.number("SKYPORT_SMTP_TIMEOUT_S", 10.0, minimum=0.1),
        sms_url=env.optional_http_url("SKYPORT_SMS_URL"),
        sms_token=env.text("SKYPORT_SMS_TOKEN") or None,
        sms_timeout_s=env.number("SKYPORT_SMS_TIMEOUT_S", 10.0, minimum=0.1),
        push_url=env.optional_http_url("SKYPORT_PUSH_URL"),
        push_token=env.text("SKYPORT_PUSH_TOKEN") or None,
        push_timeout_s=env.number("SKYPORT_PUSH_TIMEOUT_S", 10.0, minimum=0.1),
        sms_rate=env.rate("SKYPORT_SMS_RATE"),
        push_rate=env.rate("SKYPORT_PUSH_RATE"),
        smtp_rate=env.rate("SKYPORT_SMTP_RATE"),
        batch=env.int("SKYPORT_NOTIFY_BATCH", 100, minimum=1),
        lease_s=env.number("SKYPORT_NOTIFY_LEASE_S", 120.0, minimum=1),
        time_budget_s=env.number("SKYPORT_NOTIFY_TIME_BUDGET_S", 50.0, minimum=0.1),
        backoff_base_s=env.number("SKYPORT_NOTIFY_BACKOFF_BASE_S", 30.0),
        backoff_max_s=env.number("SKYPORT_NOTIFY_BACKOFF_MAX_S", 3600.0),
    )


@lru_cache(maxsize=1)
def get() -> Config:
    """The process-wide configuration, read once (`get.cache_clear()` re-reads it)."""
    return load()
