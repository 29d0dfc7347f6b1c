"""The measurements of a capacity plan (`python -m bench.capacity`): per job, PostgreSQL WAL bytes,
row writes and stored bytes, Redis memory per queued message, and CPU per process role; and the
connection budget through one PgBouncer pool (`python -m bench.capacity.connections`)."""
