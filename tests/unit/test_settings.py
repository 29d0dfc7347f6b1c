import subprocess
import sys

import pytest

import config
from tests.support import REPO


def test_defaults_point_at_local_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "SKYPORT_BROKER_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    cfg = config.load()
    assert cfg.database.url == "postgresql://postgres@127.0.0.1:5432/skyport"
    assert cfg.broker.url == "redis://127.0.0.1:6379/0"
    assert cfg.broker.kind == "redis"
    assert cfg.database.sqlalchemy_url == "postgresql+psycopg://postgres@127.0.0.1:5432/skyport"


def test_web_processes_and_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("SKYPORT_WEB_ACCESS_LOG", raising=False)
    assert (config.load().web.concurrency, config.load().web.access_log) == (1, True)
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    monkeypatch.setenv("SKYPORT_WEB_ACCESS_LOG", "off")
    assert (config.load().web.concurrency, config.load().web.access_log) == (3, False)


def test_amqp_url_selects_rabbitmq(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "amqp://guest:guest@127.0.0.1:5672/")
    assert config.load().broker.kind == "rabbitmq"


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://x@localhost/db", "DATABASE_URL must start with"),
        ("DATABASE_URL", "postgresql://host:notaport/db", "DATABASE_URL is not a valid URL"),
        ("REDIS_URL", "http://localhost", "REDIS_URL must start with"),
        ("REDIS_URL", "redis://", "REDIS_URL has no host"),
        ("SKYPORT_WORKER_THREADS", "many", "SKYPORT_WORKER_THREADS must be a number"),
        ("SKYPORT_WORKER_THREADS", "0", "SKYPORT_WORKER_THREADS must be >= 1"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be >= 1"),
        ("SKYPORT_WEB_ACCESS_LOG", "maybe", "SKYPORT_WEB_ACCESS_LOG must be 1/0"),
    ],
)
def test_malformed_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(config.ConfigError, match=fragment):
        config.load()


def test_cli_reports_a_bad_url_in_one_line_without_traceback() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "skyport", "jobs", "list"],
        env={"PATH": "/usr/bin:/bin", "DATABASE_URL": "mysql://nope", "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "skyport: configuration error: DATABASE_URL must start with one of postgresql://, postgres://: "
        "'mysql://nope'"
    ]
    assert "Traceback" not in out.stderr
