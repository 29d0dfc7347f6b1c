"""What of the business schema Alembic's comparison leaves out: the monthly partitions of the
partitioned parents and the materialized views (`include_object`, used by env.py and the tests)."""

from __future__ import annotations

import re

# Parents partitioned by month; their partitions are named `<parent>_<yyyy>_<mm>`.
PARTITIONED_TABLES = ("shipment_tracking_events", "audit_log")
# Relations of the migration that are deliberately not tables of the metadata.
NOT_IN_METADATA = frozenset({"active_countries", "shipment_statistics"})  # materialized views

# Partition names (jobs/partitions): `<parent>_<yyyy>`, `<parent>_<yyyy>_<mm>`, `<parent>_<yyyy>_<mm>_<dd>`.
_PARTITION_NAME = re.compile(
    rf"^(?:{'|'.join(re.escape(t) for t in PARTITIONED_TABLES)})_(?:19|20|21)\d\d"
    r"(?:_(?:0[1-9]|1[0-2])(?:_(?:0[1-9]|[12]\d|3[01]))?)?$"
)


def is_partition_name(name: str) -> bool:
    """True for `<parent>_<yyyy>[_<mm>[_<dd>]]` where parent is one of PARTITIONED_TABLES."""
    return _PARTITION_NAME.match(name) is not None


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's `include_object` hook (used by env.py and the tests).

    Leaves out of the autogenerate comparison only database tables that have no counterpart in the
    metadata and are legitimately absent from it: the monthly partitions of PARTITIONED_TABLES and
    the relations in NOT_IN_METADATA. Anything else missing from the metadata is still reported.
    """
    if type_ == "table" and reflected and compare_to is None and name is not None:
        return not (is_partition_name(name) or name in NOT_IN_METADATA)
    return True
