"""`/metrics`: Prometheus gauges read from the ledger and the job families at each scrape.

Workers export Dramatiq's own metrics (messages, durations) through its Prometheus middleware
(`SKYPORT_WORKER_METRICS_PORT`); this endpoint adds what only the database knows.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from db import pool
from jobs import registry
from jobs.family import Gauge
from workers import ledger, stats


class LedgerCollector:
    def collect(self) -> Iterator[Metric]:
        with pool.connection() as conn:
            by_state = stats.state_counts(conn, ledger.JobState)  # no scan of the ledger per scrape
            oldest_queued_s, dead_last_hour = ledger.health(conn)
            families = [m for f in registry.FAMILIES if f.metrics for m in f.metrics(conn)]

        jobs = GaugeMetricFamily("skyport_jobs", "Jobs in the ledger by state", labels=["state"])
        for state, count in sorted(by_state.items()):
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily(
            "skyport_oldest_queued_job_age_seconds",
            "Age of the oldest queued job (0 when none)",
            value=oldest_queued_s,
        )
        yield GaugeMetricFamily(
            "skyport_dead_jobs_last_hour", "Jobs that went dead in the last hour", value=dead_last_hour
        )
        for gauge in families:  # each family's gauges (jobs/<family>/family.py)
            yield _prometheus(gauge)


def _prometheus(gauge: Gauge) -> Metric:
    if gauge.label is None:
        return GaugeMetricFamily(gauge.name, gauge.help, value=gauge.values[None])
    metric = GaugeMetricFamily(gauge.name, gauge.help, labels=[gauge.label])
    for label, value in gauge.values.items():
        metric.add_metric([str(label)], value)
    return metric


_registry = CollectorRegistry(auto_describe=False)
_registry.register(LedgerCollector())


async def metrics(request: Request) -> Response:
    body = await run_in_threadpool(generate_latest, _registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
