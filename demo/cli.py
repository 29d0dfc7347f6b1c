"""The demo's command line (`python -m demo`, from the repository root):

    python -m demo seed
    python -m demo simulate-payments [--url URL] [--provider P] [--events N] [--rate R] [--duplicates P]
                                     [--out-of-order P] [--failures P] [--refunds P] [--create-shipments K]
                                     [--shipments K] [--concurrency C] [--seed S] [--wait S]

`seed`: demo jobs and each job family's demo data. `simulate-payments`: the payment-gateway
simulator (demo/payments_simulator.py) against a running web process.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import config
from demo.gateway_formats import FORMATS
from demo.payments_simulator import (
    Plan,
    create_demo_shipments,
    mismatches,
    payable_shipments,
    plan_events,
    post_events,
)
from skyport.errors import CommandError
from skyport.main import run_command


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(_parser, argv, prog="demo")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo", description="The demo and its tools (not shipped with the product)."
    )
    sub = p.add_subparsers(title="commands", metavar="COMMAND")
    sub.add_parser("seed", help="create demo jobs and data for every job family").set_defaults(run=_seed)
    _add_simulate_payments(sub)
    return p


# ---- seed ------------------------------------------------------------------------------------


def _seed(args: argparse.Namespace) -> int:
    import demo.actors  # noqa: F401 - the demo's actors, whatever SKYPORT_EXTRA_MODULES says
    import jobs.registry  # noqa: F401 - every job family's actors
    from db import pool
    from demo import seed

    with pool.connection() as conn, conn.transaction():
        lines = seed.seed(conn, run=str(int(time.time())))
    for line in lines:
        print(f"demo: {line}")
    return 0


# ---- simulate-payments -----------------------------------------------------------------------


def _add_simulate_payments(subparsers: Any) -> None:
    cmd = subparsers.add_parser(
        "simulate-payments", help="post signed payment-gateway callbacks to a running web process"
    )
    cmd.add_argument(
        "--url", default=None, help="web process (default: http://127.0.0.1:$PORT, PORT defaulting to 8000)"
    )
    cmd.add_argument(
        "--provider", default="simulator", help="provider name in the URL (default: %(default)s)"
    )
    cmd.add_argument(
        "--events", type=int, default=1000, help="deliveries, duplicates included (default: %(default)s)"
    )
    cmd.add_argument(
        "--rate", type=float, default=0.0, help="events per second (default: as fast as possible)"
    )
    cmd.add_argument(
        "--duplicates", type=float, default=0.05, help="share re-delivered (default: %(default)s)"
    )
    cmd.add_argument(
        "--out-of-order", type=float, default=0.1, help="share delivered late (default: %(default)s)"
    )
    cmd.add_argument("--failures", type=float, default=0.05, help="share of payments that fail first")
    cmd.add_argument("--refunds", type=float, default=0.05, help="share of payments partly refunded")
    cmd.add_argument("--disputes", type=float, default=0.0, help="share of payments disputed (won or lost)")
    cmd.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="the gateway's format and signature (default: PAYMENT_PROVIDER_<NAME>, else standard)",
    )
    cmd.add_argument(
        "--create-shipments",
        type=int,
        default=0,
        metavar="K",
        help="create K demo shipments (tracking SIMPAY-...) and pay those",
    )
    cmd.add_argument(
        "--shipments",
        type=int,
        default=100,
        metavar="K",
        help="without --create-shipments: pay the K newest USD shipments with a balance due",
    )
    cmd.add_argument("--concurrency", type=int, default=16)
    cmd.add_argument("--seed", type=int, default=None)
    cmd.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="S",
        help="then wait up to S seconds for processing and check every shipment's amount_paid",
    )
    cmd.set_defaults(run=_simulate_payments)


def _simulate_payments(args: argparse.Namespace) -> int:
    cfg = config.get()
    secrets = cfg.payments.secrets_for(args.provider)
    args.format = args.format or cfg.payments.adapter_for(args.provider)
    if not secrets:
        raise CommandError(
            f"no webhook secret for provider {args.provider!r}: set PAYMENT_WEBHOOK_SECRET "
            f"(or PAYMENT_WEBHOOK_SECRET_{args.provider.upper()}) for both the web process and this command"
        )
    url = args.url or f"http://127.0.0.1:{cfg.web.port}"
    shipments, plan, before = _plan_payments(args)
    print(
        f"posting {len(plan.bodies)} events ({plan.unique_events} unique, {plan.payments} payments) "
        f"for {len(shipments)} shipments to {url}, as {args.format}"
    )
    sending = {"rate": args.rate, "concurrency": args.concurrency, "fmt": args.format}
    stats = post_events(url, args.provider, secrets, plan.bodies, **sending)
    print(
        f"posted in {stats.elapsed_s:.1f}s ({len(plan.bodies) / max(stats.elapsed_s, 1e-9):.0f}/s); "
        f"answers {_counts(stats.statuses, 'HTTP ')}; latency p50 {stats.percentile_ms(0.5):.1f} ms, "
        f"p99 {stats.percentile_ms(0.99):.1f} ms"
    )
    for error in stats.errors[:5]:
        print(f"  error: {error}")
    if args.wait <= 0:
        return 0 if set(stats.statuses) == {200} else 1
    return _check_ledger(args.wait, plan.expected_paid, before)


def _plan_payments(args: argparse.Namespace) -> tuple[list[tuple], Plan, dict[str, int]]:
    """The shipments to pay (created or found), the plan of callbacks, the inbox's counts before."""
    from db import pool
    from jobs.payments import inbox

    with pool.connection() as conn:
        if args.create_shipments > 0:
            shipments = create_demo_shipments(conn, args.create_shipments, args.seed)
        else:
            shipments = payable_shipments(conn, args.shipments)
        if not shipments:
            raise CommandError("no shipment to pay: use --create-shipments K")
        plan = plan_events(
            shipments,
            events=args.events,
            duplicates=args.duplicates,
            out_of_order=args.out_of_order,
            failures=args.failures,
            refunds=args.refunds,
            disputes=args.disputes,
            seed=args.seed,
            fmt=args.format,
        )
        before = inbox.count_by_status(conn)
    return shipments, plan, before


def _check_ledger(wait_s: float, expected_paid: dict[uuid.UUID, Decimal], before: dict[str, int]) -> int:
    """Wait up to `wait_s` for the inbox to be processed, then check every shipment's amount_paid."""
    from db import pool
    from jobs.payments import inbox

    deadline = time.monotonic() + wait_s
    with pool.connection() as conn:
        while time.monotonic() < deadline:
            counts = inbox.count_by_status(conn)
            if not counts.get("received") and not counts.get("processing"):
                break
            time.sleep(0.5)
        wrong = mismatches(conn, expected_paid)
        counts = inbox.count_by_status(conn)
    print(f"inbox: {_counts(counts)} (before: {_counts(before)})")
    if wrong:
        for sid, want, got in wrong[:10]:
            print(f"  shipment {sid}: expected {want} paid, has {got}")
        raise CommandError(f"{len(wrong)} shipment(s) do not match the expected ledger")
    print(f"all {len(expected_paid)} shipments match the expected ledger")
    return 0


def _counts(counts: dict[Any, int], prefix: str = "") -> str:
    """Counts as people read them: `{"applied": 73}` is `73 applied`, nothing `none`."""
    return ", ".join(f"{n} {prefix}{key}" for key, n in sorted(counts.items(), key=str)) or "none"
