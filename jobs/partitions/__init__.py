"""Partition maintenance: a registry of partitioned tables (registry.py), partitions created ahead
and expired ones dropped or detached (maintain.py), coverage for ops (status.py), the hourly
actor and the scheduler's start-up hook (actors.py), `skyport partitions` (cli.py).

For the dashboard: `coverage(conn) -> list[Coverage]`.
"""

from jobs.partitions.maintain import TableResult, apply_retention, ensure_partitions
from jobs.partitions.registry import Interval, PartitionedTable, load_tables
from jobs.partitions.status import Coverage, coverage

__all__ = [
    "Coverage",
    "Interval",
    "PartitionedTable",
    "TableResult",
    "apply_retention",
    "coverage",
    "ensure_partitions",
    "load_tables",
]
