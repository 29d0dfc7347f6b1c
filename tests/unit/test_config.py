import re
import subprocess
import sys

import pytest

import config
from tests.support import REPO


def test_defaults_point_at_local_servers() -> None:
    cfg = config.load({})
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


def test_amqp_url_selects_rabbitmq() -> None:
    assert config.load({"BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/"}).broker.kind == "rabbitmq"


def test_broker_url_names_the_broker_and_redis_url_is_its_older_name() -> None:
    assert config.load({"REDIS_URL": "redis://old:6379/1"}).broker.url == "redis://old:6379/1"
    both = {"BROKER_URL": "amqp://new:5672/", "REDIS_URL": "redis://old:6379/1"}
    assert config.load(both).broker.url == "amqp://new:5672/"
    with pytest.raises(config.ConfigError, match="BROKER_URL must start with"):
        config.load({"BROKER_URL": "http://nope", "REDIS_URL": "redis://old:6379/1"})


def test_named_variables_reach_their_area() -> None:
    cfg = config.load(
        {
            "PAYMENT_WEBHOOK_SECRET": "default",
            "PAYMENT_WEBHOOK_SECRET_PAY_STACK": "whsec_x",
            "SKYPORT_SCHEDULE_PRUNE_JOBS": "off",
            "SKYPORT_SCHEDULE_FILE": "/etc/skyport/schedule.toml",
            "SKYPORT_EXTRA_MODULES": "app.jobs, app.more ,",
        }
    )
    assert cfg.payments.secret_for("pay-stack") == "whsec_x"
    assert cfg.payments.secret_for("other") == "default"
    assert cfg.scheduler.overrides == {"SKYPORT_SCHEDULE_PRUNE_JOBS": "off"}
    assert cfg.scheduler.file == "/etc/skyport/schedule.toml"
    assert cfg.worker.extra_modules == ("app.jobs", "app.more")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("DATABASE_URL", "mysql://x@localhost/db", "DATABASE_URL must start with"),
        ("DATABASE_URL", "postgresql://host:notaport/db", "DATABASE_URL is not a valid URL"),
        ("REDIS_URL", "http://localhost", "REDIS_URL must start with"),
        ("REDIS_URL", "redis://", "REDIS_URL has no host"),
        ("LOG_FORMAT", "yaml", "LOG_FORMAT must be text or json"),
        ("SKYPORT_SMTP_TLS", "tls13", "SKYPORT_SMTP_TLS must be starttls, ssl or none"),
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


@pytest.mark.parametrize(
    ("command", "env", "message"),
    [
        (
            ["jobs", "list"],
            {"DATABASE_URL": "mysql://nope"},
            "DATABASE_URL must start with one of postgresql://, postgres://: 'mysql://nope'",
        ),
        (["--version"], {"SKYPORT_EXTRA_MODULES": "no.such.module"}, "SKYPORT_EXTRA_MODULES: cannot import"),
    ],
)
def test_cli_reports_bad_configuration_in_one_line_without_traceback(
    command: list[str], env: dict[str, str], message: str
) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "skyport", *command],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert line.startswith(f"skyport: configuration error: {message}")
    assert "Traceback" not in out.stderr


def test_nothing_but_config_reads_the_environment() -> None:
    """Only config/ reads os.environ; the product may still write variables a library reads
    (Dramatiq's Prometheus port)."""
    readers = []
    for package in ("db", "workers", "jobs", "scheduler", "dashboard", "skyport"):
        for path in (REPO / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                code = line.split("#")[0]
                if "getenv(" in code or re.search(r"os\.environ(?!\[[^]]*\]\s*=)", code):
                    readers.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not readers, "read the variable through config/ instead:\n" + "\n".join(readers)


def test_the_web_listens_locally_and_the_database_pooler_is_explicit() -> None:
    cfg = config.load({})
    assert (cfg.web.host, cfg.database.pooler, cfg.database.session_url) == (
        "127.0.0.1",
        "none",
        config.DEFAULT_DATABASE_URL,
    )
    pooled = config.load(
        {"DATABASE_URL": "postgresql://u@pooler:6432/db", "SKYPORT_DATABASE_POOLER": "transaction"}
    ).database
    assert pooled.session_url is None
    direct = config.load(
        {
            "DATABASE_URL": "postgresql://u@pooler:6432/db",
            "SKYPORT_DATABASE_POOLER": "transaction",
            "DATABASE_DIRECT_URL": "postgresql://u@db:5432/db",
        }
    ).database
    assert direct.session_url == "postgresql://u@db:5432/db"
    with pytest.raises(config.ConfigError, match="SKYPORT_DATABASE_POOLER must be none or transaction"):
        config.load({"SKYPORT_DATABASE_POOLER": "session"})
