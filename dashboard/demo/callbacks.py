"""Simulated payment-gateway callbacks for the demo, once the web process answers:

    python -m dashboard.demo.callbacks &

runs `skyport simulate payments` (jobs/payments: duplicates and out-of-order events, signed) against
the demo shipments. Does nothing when jobs/payments has no simulator.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request

# Seconds to wait for the web process.
DEFAULT_WAIT_S = 120.0


def main() -> int:
    base = f"http://127.0.0.1:{os.environ.get('PORT') or 8000}"
    deadline = time.monotonic() + DEFAULT_WAIT_S
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                print(f"demo: {base} did not answer; no payment callbacks", file=sys.stderr)
                return 1
            time.sleep(1)
    from workers import cli

    argv = ["simulate", "payments", "--url", base, "--events", "40", "--rate", "4", "--seed", "7"]
    try:
        return cli.main(argv)
    except SystemExit as exc:  # argparse: no `simulate payments` command in this version
        print(f"demo: no payment simulator ({exc})", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
