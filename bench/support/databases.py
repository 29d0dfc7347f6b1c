"""Scratch databases and Redis namespaces of a bench's own, removed on the way out."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql


def with_dbname(database_url: str, dbname: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def bench_database(base_url: str, name: str) -> Iterator[str]:
    """A fresh database, migrated to the newest schema; dropped on the way out."""
    from db import migrate

    with fresh_database(base_url, name, lambda url: migrate.upgrade(database_url=url)) as url:  # every head
        yield url


@contextlib.contextmanager
def fresh_database(base_url: str, name: str, set_up: Callable[[str], object]) -> Iterator[str]:
    """A new database `name` on the server of `base_url`, `set_up(url)` run on it; dropped on the
    way out."""
    admin_url = with_dbname(base_url, "postgres")
    url = with_dbname(base_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        set_up(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def redis_namespaces(redis_url: str, *namespaces: str) -> Iterator[None]:
    """Delete every key of the namespaces on the way out (never anything else)."""
    try:
        yield
    finally:
        client = redis.Redis.from_url(redis_url)
        for namespace in namespaces:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        client.close()
