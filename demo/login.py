"""The demo's dashboard login, only when no users are configured:

    eval "$(python -m demo.login)"

prints `export` lines for SKYPORT_DASHBOARD_USERS (user `demo`, admin, the password below),
a SKYPORT_SECRET_KEY kept in .data/ so sessions survive a restart, the demo actors, and a
webhook secret for the demo's payment simulator (when none is set). What is set already it reads
through `config.load()`, as the product's processes will.
"""

from __future__ import annotations

import secrets
import shlex
from pathlib import Path

import config
from dashboard import auth

DEMO_USER = "demo"
# Printed by scripts/run; used only when SKYPORT_DASHBOARD_USERS is unset.
DEMO_PASSWORD = "skyport-demo"
DATA = Path(__file__).resolve().parents[1] / ".data"
# The module of the demo's actors, added to SKYPORT_EXTRA_MODULES for the worker.
DEMO_ACTORS = "demo.actors"
# The secret the demo's web process and its gateway simulator share when none is configured.
DEMO_WEBHOOK_SECRET = "demo-webhook-secret"


def main() -> int:
    cfg = config.load()
    lines = []
    if not cfg.web.dashboard_users:
        users = f"{DEMO_USER}:{auth.hash_password(DEMO_PASSWORD)}:admin"
        lines += [
            f"export SKYPORT_DASHBOARD_USERS={shlex.quote(users)}",
            f"export SKYPORT_DEMO_LOGIN={DEMO_USER}/{DEMO_PASSWORD}",
        ]
    if not cfg.web.secret_key:
        DATA.mkdir(exist_ok=True)
        key_file = DATA / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        lines.append(f"export SKYPORT_SECRET_KEY={shlex.quote(key_file.read_text().strip())}")
    if not (cfg.payments.webhook_secret or "").strip():  # the demo's gateway simulator signs with it
        lines.append(f"export PAYMENT_WEBHOOK_SECRET={DEMO_WEBHOOK_SECRET}")
    extra = list(cfg.worker.extra_modules)
    if DEMO_ACTORS not in extra:
        lines.append(f"export SKYPORT_EXTRA_MODULES={shlex.quote(','.join([*extra, DEMO_ACTORS]))}")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
