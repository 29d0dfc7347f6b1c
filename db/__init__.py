"""Database layer: connections, SQLAlchemy Core tables, Alembic migrations."""
