"""Alembic environment: runs online against the URL the caller put in the config."""

from alembic import context
from sqlalchemy import create_engine, pool

from db.pool import connect_kwargs
from db.schema import metadata

# include_object: what autogenerate compares. Everything, except database tables that are
# legitimately absent from the metadata: the monthly partitions `<parent>_<yyyy>_<mm>` of the
# partitioned parents (created by the migration and the partition job) and the materialized views.
# Defined next to the tables it knows about, and shared with tests/integration/test_schema.py.
from db.schema.business import include_object

config = context.config


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Without a pool of its own; the product's connection options (db/pool.py: no prepared
    # statements behind a transaction pooler).
    engine = create_engine(
        config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool, connect_args=connect_kwargs()
    )
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
