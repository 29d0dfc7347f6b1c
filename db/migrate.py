"""Alembic, driven from Python: upgrade, downgrade, current revision, "is the schema at head"."""

from __future__ import annotations

from pathlib import Path

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine, pool

import config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = database_url or config.get().database.url
    cfg.set_main_option("sqlalchemy.url", config.to_sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(revision: str = "heads", database_url: str | None = None) -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(revision: str, database_url: str | None = None) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision ("a, b" while feature branches are not merged yet)."""
    heads = ScriptDirectory.from_config(alembic_config("postgresql://unused@localhost/x")).get_heads()
    return ", ".join(sorted(heads)) or None


def current_revision(database_url: str | None = None) -> str | None:
    engine = create_engine(
        config.to_sqlalchemy_url(database_url or config.get().database.url), poolclass=pool.NullPool
    )
    try:
        with engine.connect() as conn:
            heads = MigrationContext.configure(conn).get_current_heads()
            return ", ".join(sorted(heads)) or None
    finally:
        engine.dispose()


def create_database_if_missing(database_url: str | None = None) -> bool:
    """Create the database named in the URL when it does not exist; True if it was created."""
    info = psycopg.conninfo.conninfo_to_dict(database_url or config.get().database.url)
    name = info.get("dbname") or "postgres"
    admin = psycopg.conninfo.make_conninfo(**{**info, "dbname": "postgres"})
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
