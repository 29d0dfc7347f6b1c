"""Simulated payment-gateway callbacks for the demo, once the web process answers:

    python -m demo.callbacks &

runs `python -m demo simulate-payments` (demo/payments_simulator.py: duplicates and out-of-order
events, signed) against the demo shipments, at the web process's port (PORT, read by `config`).
"""

from __future__ import annotations

import sys
import time
import urllib.request

import config

# Seconds to wait for the web process.
DEFAULT_WAIT_S = 120.0


def main() -> int:
    base = f"http://127.0.0.1:{config.load().web.port}"
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
    from demo import cli

    return cli.main(["simulate-payments", "--url", base, "--events", "40", "--rate", "4", "--seed", "7"])


if __name__ == "__main__":
    raise SystemExit(main())
