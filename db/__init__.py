"""Database layer: settings, connections, SQLAlchemy Core tables, Alembic migrations."""
