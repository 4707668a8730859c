"""Alembic migrations of the store, SQLite and PostgreSQL alike (run by ``migrate``)."""
