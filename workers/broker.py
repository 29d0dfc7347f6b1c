"""Builds the Dramatiq broker from settings: Redis by default, RabbitMQ for an amqp:// URL.

Retries and delays live in the ledger (see workers/ledger.py), so Dramatiq's Retries middleware
is left out; TimeLimit, ShutdownNotifications and CurrentMessage are Dramatiq's own.
"""

from __future__ import annotations

import dramatiq
import redis
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import CurrentMessage, ShutdownNotifications, TimeLimit

import config
from workers import observability
from workers.consumer import ClaimingRedisBroker
from workers.middleware import LedgerMiddleware
from workers.wake import WakeUps

# Per-actor time limit unless the actor sets `time_limit` (milliseconds, Dramatiq's unit).
DEFAULT_TIME_LIMIT_MS = 10 * 60 * 1000
# A Redis that stops answering fails calls after this long instead of hanging them (a relay
# batch waits for it, claimed but not yet handed over).
DEFAULT_REDIS_SOCKET_TIMEOUT_S = 10.0


def build_broker(cfg: config.Config | None = None) -> dramatiq.Broker:
    cfg = cfg or config.get()
    ledger_middleware = LedgerMiddleware()
    middleware = [
        ledger_middleware,
        TimeLimit(time_limit=DEFAULT_TIME_LIMIT_MS),
        ShutdownNotifications(),
        CurrentMessage(),
    ]
    if cfg.worker.metrics_port:
        observability.set_prometheus_env(cfg)
        from dramatiq.middleware.prometheus import Prometheus

        middleware.append(Prometheus())
    if cfg.broker.kind == "rabbitmq":
        return RabbitmqBroker(url=cfg.broker.url, middleware=middleware)
    wake_ups = WakeUps(cfg.broker.namespace, cfg.worker.idle_poll_s)
    middleware.append(wake_ups)
    client = redis.Redis.from_url(
        cfg.broker.url,
        socket_timeout=DEFAULT_REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=DEFAULT_REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )
    return ClaimingRedisBroker(
        claim=ledger_middleware.claim_messages,
        release=ledger_middleware.release_messages,
        client=client,
        namespace=cfg.broker.namespace,
        middleware=middleware,
        wake_ups=wake_ups,
    )


broker = build_broker()
dramatiq.set_broker(broker)
