"""SQLAlchemy Core metadata of every table the migrations create (compared in tests/)."""

from db.schema import business, console, ledger, maintenance, payments, stats  # noqa: F401  (registers the tables on `metadata`)
from db.schema.base import metadata

__all__ = ["metadata"]
