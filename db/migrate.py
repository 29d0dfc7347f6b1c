"""Alembic, driven from Python: upgrade, downgrade, current revision, "is the schema at head".

Migrations go to DATABASE_DIRECT_URL when it is set (the server itself, not a pooler in front of
it), else to DATABASE_URL; the caller may name another URL. Every connection takes the product's
options (db/pool.py: no prepared statements behind a transaction pooler).
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import Engine, create_engine, pool

import config
from db import pool as db_pool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def migration_url(database_url: str | None = None) -> str:
    """The URL migrations use: the one given, else DATABASE_DIRECT_URL, else DATABASE_URL."""
    database = config.get().database
    return database_url or database.direct_url or database.url


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = config.to_sqlalchemy_url(migration_url(database_url))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def engine(url: str) -> Engine:
    """A SQLAlchemy engine without a pool of its own, its connections with the product's options."""
    return create_engine(
        config.to_sqlalchemy_url(url), poolclass=pool.NullPool, connect_args=db_pool.connect_kwargs()
    )


def upgrade(revision: str = "heads", database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(revision: str, database_url: str | None = None) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision ("a, b" while feature branches are not merged yet)."""
    heads = ScriptDirectory.from_config(alembic_config("postgresql://unused@localhost/x")).get_heads()
    return ", ".join(sorted(heads)) or None


def current_revision(database_url: str | None = None) -> str | None:
    """The schema's revision at `database_url` (default: where migrations go)."""
    reader = engine(migration_url(database_url))
    try:
        with reader.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            return ", ".join(sorted(heads)) or None
    finally:
        reader.dispose()


def create_database_if_missing(database_url: str | None = None) -> bool:
    """Create the database named in the URL when it does not exist; True if it was created."""
    info = psycopg.conninfo.conninfo_to_dict(migration_url(database_url))
    name = info.get("dbname") or "postgres"
    admin = psycopg.conninfo.make_conninfo(**{**info, "dbname": "postgres"})
    with db_pool.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
