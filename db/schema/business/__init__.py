"""Alpha Skyport v2 business tables, as created by db/migrations/versions/0001_seed_schema.py.

SQLAlchemy Core mirror of the migration: same columns, types, nullability, server defaults,
constraints and indexes (named as PostgreSQL names them), so that Alembic's autogenerate finds no
difference (tests/integration/test_schema.py). Functions, triggers, the sequence and the
materialized views live in the migration only; the monthly partitions are created by the migration
and the partition job, and are left out of the comparison by `include_object` (comparison.py).

One module per domain, each registering its tables on `db.schema.base.metadata`: quotes (users,
countries, freight services, quotes), shipments (tracking numbers, shipments, tracking events,
capacity), payments (payment transactions), notifications (the notification queue), audit (the
audit log); columns holds the column builders they share. Every name is importable from here.
"""

from db.schema.business.audit import audit_log
from db.schema.business.comparison import (
    NOT_IN_METADATA,
    PARTITIONED_TABLES,
    include_object,
    is_partition_name,
)
from db.schema.business.notifications import notification_queue
from db.schema.business.payments import payment_transactions
from db.schema.business.quotes import QUOTE_STATUSES, countries, freight_services, quotes, users
from db.schema.business.shipments import (
    PAYMENT_STATUSES,
    SHIPMENT_STATUSES,
    capacity_bookings,
    shipment_reservations,
    shipment_tracking_events,
    shipments,
    tracking_event_external_ids,
    tracking_numbers,
)

__all__ = [
    "NOT_IN_METADATA",
    "PARTITIONED_TABLES",
    "PAYMENT_STATUSES",
    "QUOTE_STATUSES",
    "SHIPMENT_STATUSES",
    "audit_log",
    "capacity_bookings",
    "countries",
    "freight_services",
    "include_object",
    "is_partition_name",
    "notification_queue",
    "payment_transactions",
    "quotes",
    "shipment_reservations",
    "shipment_tracking_events",
    "shipments",
    "tracking_event_external_ids",
    "tracking_numbers",
    "users",
]
