"""The demo's environment, for `scripts/run` and for every other shell where the demo is on:

    eval "$(python -m demo.env)"          # scripts/run
    . .data/demo.env                      # another shell: the same settings

prints `export` lines and writes them to `.data/demo.env` (`--file` elsewhere). Only what is not
configured already (read through `config.load()`, as the product's processes will):
- a dashboard login (user `demo`, admin, the password below) and a SKYPORT_SECRET_KEY kept in
  .data/, so sessions survive a restart;
- the webhook secret the web process checks and the payments simulator signs with (one secret:
  `python -m demo simulate-payments` in a shell with this file sourced is accepted);
- the demo actors (SKYPORT_EXTRA_MODULES, and PYTHONPATH so any `skyport` command imports them),
  and the virtualenv's `skyport` and `python` first on the PATH;
- the demo's notification providers (demo/providers.py): SMTP, SMS and push, a short retry backoff,
  and a console link to what they received;
- the database and broker URLs (private servers started by demo/servers.py included).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from pathlib import Path

import config
from dashboard import auth
from demo.providers import DEFAULT_HTTP_PORT, DEFAULT_SMTP_PORT

DEMO_USER = "demo"
# Printed by scripts/run; used only when SKYPORT_DASHBOARD_USERS is unset.
DEMO_PASSWORD = "skyport-demo"
REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".data"
# The module of the demo's actors, added to SKYPORT_EXTRA_MODULES.
DEMO_ACTORS = "demo.actors"
# The secret the demo's web process and its gateway simulator share when none is configured.
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"
# Providers the demo's web process reads in their gateway's own format (PAYMENT_PROVIDER_<NAME>).
DEMO_GATEWAYS = ("stripe", "paystack")
# Notification retries in seconds, doubling: a scripted failure ends dead in well under a minute.
DEMO_NOTIFY_BACKOFF_BASE_S = 3


def export(name: str, value: str) -> str:
    return f"export {name}={shlex.quote(value)}"


def login_lines(cfg: config.Config) -> list[str]:
    lines = []
    if not cfg.web.dashboard_users:
        users = f"{DEMO_USER}:{auth.hash_password(DEMO_PASSWORD)}:admin"
        lines += [
            export("SKYPORT_DASHBOARD_USERS", users),
            export("SKYPORT_DEMO_LOGIN", f"{DEMO_USER}/{DEMO_PASSWORD}"),
        ]
    if not cfg.web.secret_key:
        DATA.mkdir(exist_ok=True)
        key_file = DATA / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        lines.append(export("SKYPORT_SECRET_KEY", key_file.read_text().strip()))
    return lines


def provider_lines(cfg: config.Config, smtp_port: int, http_port: int) -> list[str]:
    notify = cfg.notifications
    lines = []
    if not notify.smtp_host:
        lines += [
            export("SKYPORT_SMTP_HOST", "127.0.0.1"),
            export("SKYPORT_SMTP_PORT", str(smtp_port)),
            export("SKYPORT_SMTP_TLS", "none"),
        ]
    if not notify.sms_url:
        lines.append(export("SKYPORT_SMS_URL", f"http://127.0.0.1:{http_port}/sms"))
    if not notify.push_url:
        lines.append(export("SKYPORT_PUSH_URL", f"http://127.0.0.1:{http_port}/push"))
    if lines:
        lines.append(export("SKYPORT_NOTIFY_BACKOFF_BASE_S", str(DEMO_NOTIFY_BACKOFF_BASE_S)))
    outbox = f"Demo outbox=http://127.0.0.1:{http_port}/"
    if outbox not in [f"{label}={url}" for label, url in cfg.web.console_links]:
        links = [f"{label}={url}" for label, url in cfg.web.console_links]
        lines.append(export("SKYPORT_CONSOLE_LINKS", ",".join([*links, outbox])))
    return lines


def environment(cfg: config.Config, pythonpath: str, smtp_port: int, http_port: int) -> list[str]:
    lines = [
        export("DATABASE_URL", cfg.database.url),
        export("BROKER_URL", cfg.broker.url),
        export("SKYPORT_BROKER_NAMESPACE", cfg.broker.namespace),
        export("PORT", str(cfg.web.port)),
        *login_lines(cfg),
    ]
    if not (cfg.payments.webhook_secret or "").strip():
        lines.append(export("PAYMENT_WEBHOOK_SECRET", DEMO_WEBHOOK_SECRET))
    for gateway in DEMO_GATEWAYS:  # `--provider stripe` is Stripe's format, with the same secret
        if config.provider_key(gateway) not in cfg.payments.adapters:
            lines.append(export(f"PAYMENT_PROVIDER_{gateway.upper()}", gateway))
    extra = list(cfg.worker.extra_modules)
    if DEMO_ACTORS not in extra:
        lines.append(export("SKYPORT_EXTRA_MODULES", ",".join([*extra, DEMO_ACTORS])))
    # demo/ is not installed with the product: any shell's `skyport` finds it through PYTHONPATH.
    paths = [str(REPO), *(p for p in pythonpath.split(":") if p)]
    lines.append(export("PYTHONPATH", ":".join(dict.fromkeys(paths))))
    return [*lines, path_line(), *provider_lines(cfg, smtp_port, http_port)]


def path_line() -> str:
    """`skyport` and `python` (this interpreter, the one with the product installed) first on the
    shell's PATH, once however often the file is sourced."""
    bin_dir = shlex.quote(str(Path(sys.executable).parent))
    return f'case ":$PATH:" in *":"{bin_dir}":"*) ;; *) export PATH={bin_dir}:"$PATH" ;; esac'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.env", description="the demo's environment")
    parser.add_argument("--file", type=Path, default=DATA / "demo.env", help="also write the lines here")
    parser.add_argument("--smtp-port", type=int, default=DEFAULT_SMTP_PORT, help="the demo SMTP sink's port")
    parser.add_argument(
        "--http-port", type=int, default=DEFAULT_HTTP_PORT, help="the SMS/push provider's port"
    )
    parser.add_argument("--pythonpath", default="", help="the PYTHONPATH to extend ($PYTHONPATH)")
    args = parser.parse_args(argv)
    lines = environment(config.load(), args.pythonpath, args.smtp_port, args.http_port)
    text = "\n".join(lines) + "\n"
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text(
        "# The demo's settings (python -m demo.env): `. .data/demo.env` in any shell.\n" + text
    )
    args.file.chmod(0o600)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
