"""The demo's dashboard login, only when no users are configured:

    eval "$(python -m dashboard.demo.login)"

prints `export` lines for SKYPORT_DASHBOARD_USERS (user `demo`, admin, the password below),
a SKYPORT_SECRET_KEY kept in .data/ so sessions survive a restart, the demo actors, and a
webhook secret for the demo's payment simulator (when none is set).
"""

from __future__ import annotations

import os
import secrets
import shlex
from pathlib import Path

from dashboard import auth

DEMO_USER = "demo"
# Printed by scripts/run; used only when SKYPORT_DASHBOARD_USERS is unset.
DEMO_PASSWORD = "skyport-demo"
DATA = Path(__file__).resolve().parents[2] / ".data"


def main() -> int:
    lines = []
    if not os.environ.get("SKYPORT_DASHBOARD_USERS", "").strip():
        users = f"{DEMO_USER}:{auth.hash_password(DEMO_PASSWORD)}:admin"
        lines += [
            f"export SKYPORT_DASHBOARD_USERS={shlex.quote(users)}",
            f"export SKYPORT_DEMO_LOGIN={DEMO_USER}/{DEMO_PASSWORD}",
        ]
    if not os.environ.get("SKYPORT_SECRET_KEY", "").strip():
        DATA.mkdir(exist_ok=True)
        key_file = DATA / "secret_key"
        if not key_file.exists():
            key_file.write_text(secrets.token_urlsafe(32))
            key_file.chmod(0o600)
        lines.append(f"export SKYPORT_SECRET_KEY={shlex.quote(key_file.read_text().strip())}")
    if not os.environ.get("PAYMENT_WEBHOOK_SECRET", "").strip():  # the demo's gateway simulator signs with it
        lines.append("export PAYMENT_WEBHOOK_SECRET=demo-webhook-secret")
    extra = [m for m in os.environ.get("SKYPORT_EXTRA_MODULES", "").split(",") if m.strip()]
    if "dashboard.demo.actors" not in extra:
        lines.append(
            f"export SKYPORT_EXTRA_MODULES={shlex.quote(','.join([*extra, 'dashboard.demo.actors']))}"
        )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
