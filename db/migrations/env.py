"""Alembic environment: runs online against the URL the caller put in the config."""

from alembic import context
from sqlalchemy import create_engine, pool

from db.schema import metadata

config = context.config


def include_object(obj, name, type_, reflected, compare_to):  # noqa: ANN001
    # Partitions are created by the partition job, not declared in the metadata.
    if type_ == "table" and reflected and compare_to is None and obj.info.get("is_partition"):
        return False
    return True


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        context.configure(connection=connectable, target_metadata=metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=metadata, include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
