"""Each end-to-end test that has a database runs twice: on the server directly, and through the
suite's PgBouncer in transaction mode (SKYPORT_DATABASE_POOLER=transaction, no DATABASE_DIRECT_URL:
nothing LISTENs, the relay sweeps). SKYPORT_TEST_DATABASE_ROUTE narrows it to one route."""

from __future__ import annotations

import pytest

from tests.conftest import parametrize_routes


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_routes(metafunc)
